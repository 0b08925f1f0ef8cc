/**
 * Choosing a broker from a URL, for the CLI and for applications: `nats://…` or `amqp(s)://…`.
 * The broker modules are loaded only when one is asked for, so a replica on HTTP long-poll does not
 * load a broker client.
 */
import { BadRequestError } from '../../errors.js'
import type { Logger } from '../../store/store.js'
import type { RelaySink } from '../../relay/relay.js'
import type { FeedSource } from '../feed-source.js'
import { LongPollTransport } from '../http/long-poll-transport.js'
import type { ChangeTransport } from '../transport.js'
import { FallbackTransport } from './fallback-transport.js'
import type { AmqpQueueSettings } from '../amqp/amqp-settings.js'
import type { NatsStreamSettings } from '../nats/nats-settings.js'

export type BrokerKind = 'nats' | 'amqp'

export interface BrokerChoice {
  kind: BrokerKind
  url: string
  /** Stream / exchange name prefix (default `tidemark`). */
  prefix?: string
}

export function brokerKind(url: string): BrokerKind {
  if (/^(nats|tls):\/\//i.test(url)) return 'nats'
  if (/^amqps?:\/\//i.test(url)) return 'amqp'
  throw new BadRequestError(`${url} is not a broker URL: use nats://host:4222 or amqp://user:pass@host:5672`)
}

/**
 * The broker transport with HTTP long-poll over `source` behind it (FallbackTransport): what a
 * replica uses while the broker is away. `replica` names a RabbitMQ replica's queue.
 */
export async function brokerTransport(
  choice: BrokerChoice,
  source: FeedSource,
  options: { replica: string; retryMs?: number; logger?: Logger; queueSettings?: AmqpQueueSettings },
): Promise<ChangeTransport> {
  const common = { ...(choice.prefix ? { prefix: choice.prefix } : {}), ...(options.logger ? { logger: options.logger } : {}) }
  let broker: ChangeTransport
  if (choice.kind === 'nats') {
    const { NatsTransport } = await import('../nats/nats-transport.js')
    broker = new NatsTransport({ servers: choice.url, ...common })
  } else {
    const { AmqpTransport } = await import('../amqp/amqp-transport.js')
    broker = new AmqpTransport({ url: choice.url, queue: options.replica, ...common, ...(options.queueSettings ? { queueSettings: options.queueSettings } : {}) })
  }
  return new FallbackTransport(broker, new LongPollTransport(source, { waitMs: 5000 }), {
    ...(options.retryMs !== undefined ? { retryMs: options.retryMs } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  })
}

export interface SinkSettings {
  /** NATS: the settings of a stream the relay creates. */
  stream?: NatsStreamSettings
}

export async function brokerSink(choice: BrokerChoice, settings: SinkSettings = {}): Promise<RelaySink> {
  const prefix = choice.prefix ? { prefix: choice.prefix } : {}
  if (choice.kind === 'nats') {
    const { NatsSink } = await import('../nats/nats-sink.js')
    return new NatsSink({
      servers: choice.url,
      ...prefix,
      ...(settings.stream ? { stream: settings.stream } : {}),
    })
  }
  const { AmqpSink } = await import('../amqp/amqp-sink.js')
  return new AmqpSink({ url: choice.url, ...prefix })
}
