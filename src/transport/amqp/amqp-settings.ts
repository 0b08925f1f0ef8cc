/**
 * Where a feed lives in RabbitMQ (docs/brokers.md, "RabbitMQ"): a durable topic exchange per feed,
 * `tidemark.<feed>`, with each epoch's messages under the routing key `<epoch>`; a durable queue per
 * replica, `tidemark.<feed>.replica.<name>`, bound to its epoch; and two queues of the relay's:
 * `…relay-position` (the last position the broker confirmed, one message long) and `…relay-lock`
 * (exclusive: the one relay holding it publishes, others wait).
 */
import { connect, type ChannelModel } from 'amqplib'
import { BrokerUnavailableError } from '../../errors.js'

export interface AmqpQueueSettings {
  /** Messages a replica's queue keeps at most; the oldest go first (the replica pulls them from the log). Default 100 000. */
  maxLength?: number
  /** Drop messages older than this (ms). Default: by length only. */
  messageTtlMs?: number
  /** Delete a replica's queue nobody consumed for this long (ms). Default 7 days. */
  expiresMs?: number
}

export interface AmqpConnectOptions {
  /** `amqp://user:pass@host:port/vhost`. */
  url: string
  /** Exchange and queue name prefix. Default `tidemark`. */
  prefix?: string
  /** Give up connecting after this long (ms). Default 2 000. */
  connectTimeoutMs?: number
}

export function exchangeName(feed: string, prefix = 'tidemark'): string {
  return `${prefix}.${feed}`
}

export function replicaQueueName(feed: string, replica: string, prefix = 'tidemark'): string {
  return `${prefix}.${feed}.replica.${replica}`
}

export function relayQueueName(feed: string, what: 'position' | 'lock', prefix = 'tidemark'): string {
  return `${prefix}.${feed}.relay-${what}`
}

export function replicaQueueArguments(settings: AmqpQueueSettings): Record<string, unknown> {
  return {
    'x-max-length': settings.maxLength ?? 100_000,
    'x-overflow': 'drop-head',
    'x-expires': settings.expiresMs ?? 7 * 24 * 3600_000,
    ...(settings.messageTtlMs !== undefined ? { 'x-message-ttl': settings.messageTtlMs } : {}),
  }
}

/** A connection whose errors are reported through its `close` event, not as an unhandled 'error'. */
export async function amqpConnect(options: AmqpConnectOptions): Promise<ChannelModel> {
  try {
    const model = await connect(options.url, { timeout: options.connectTimeoutMs ?? 2000 })
    model.on('error', () => {})
    return model
  } catch (error) {
    throw new BrokerUnavailableError(`cannot connect to RabbitMQ at ${describeUrl(options.url)}: ${(error as Error).message}`, error)
  }
}

export function describeUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//')
}

/** A header value as a string (AMQP tables may carry it as a buffer or a number). */
export function headerString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  if (typeof value === 'number') return String(value)
  return undefined
}
