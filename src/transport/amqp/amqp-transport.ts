/**
 * The replica's RabbitMQ side: a durable queue of the replica's own, bound to its feed's exchange
 * under its epoch, consumed with manual acks. A message is acked only after the replica has
 * applied (and committed) what it holds, or found it already applied — so a replica that dies
 * mid-apply gets the message again and drops what it already has. `prefetch` bounds what waits
 * unacked. The queue fills while the replica is away (up to `maxLength`, oldest dropped first),
 * and whatever it lost the replica pulls from the log.
 *
 * The subscription ends with BrokerUnavailableError when the connection or channel closes or the
 * server cancels the consumer (the queue was deleted); the replica — or FallbackTransport —
 * subscribes again, which declares the queue anew.
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import { BrokerUnavailableError } from '../../errors.js'
import { silentLogger, type Logger } from '../../store/store.js'
import { decodeMessage } from '../broker/broker-message.js'
import { mergedChanges, MessageQueue, type Queued } from '../broker/message-queue.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../transport.js'
import {
  amqpConnect,
  describeUrl,
  exchangeName,
  headerString,
  replicaQueueArguments,
  replicaQueueName,
  type AmqpConnectOptions,
  type AmqpQueueSettings,
} from './amqp-settings.js'

export interface AmqpTransportOptions extends AmqpConnectOptions {
  /** The replica's queue is named after this (use the replica's name). */
  queue: string
  queueSettings?: AmqpQueueSettings
  /**
   * Messages delivered and not yet acked, at most. Default 16: with 2,000 changes a message, what
   * one merged delivery takes (maxDeliveryChanges) and as much again on its way.
   */
  prefetch?: number
  /** Changes of the messages waiting that one delivery takes at most (MessageQueue; default 10,000). */
  maxDeliveryChanges?: number
  logger?: Logger
}

const DEFAULT_PREFETCH = 16

export class AmqpTransport implements ChangeTransport {
  readonly name = 'amqp'
  private readonly logger: Logger

  constructor(private readonly options: AmqpTransportOptions) {
    this.logger = options.logger ?? silentLogger
  }

  async *subscribe(feed: string, options: SubscribeOptions): AsyncGenerator<Delivery> {
    const { epoch, signal } = options
    signal.throwIfAborted()
    const prefix = this.options.prefix ?? 'tidemark'
    const queue = replicaQueueName(feed, this.options.queue, prefix)
    const where = `RabbitMQ ${describeUrl(this.options.url)} queue ${queue}`
    const model: ChannelModel = await amqpConnect(this.options)
    // Decoded as they arrive; the replica takes all that wait as one delivery (MessageQueue).
    const queued = new MessageQueue<Queued & { m: ConsumeMessage }>(this.options.maxDeliveryChanges)
    let failure: BrokerUnavailableError | undefined
    const end = (error: BrokerUnavailableError): void => {
      failure ??= error
      queued.close()
    }
    model.on('close', () => end(new BrokerUnavailableError(`${where}: the connection closed`)))
    let channel: Channel | undefined
    try {
      channel = await model.createChannel()
      channel.on('error', () => {})
      channel.on('close', () => end(new BrokerUnavailableError(`${where}: the channel closed`)))
      const ch = channel
      const exchange = exchangeName(feed, prefix)
      await channel.assertExchange(exchange, 'topic', { durable: true })
      await channel.assertQueue(queue, { durable: true, arguments: replicaQueueArguments(this.options.queueSettings ?? {}) })
      await channel.bindQueue(queue, exchange, epoch)
      await channel.prefetch(this.options.prefetch ?? DEFAULT_PREFETCH)
      await channel.consume(queue, (m) => {
        if (m === null) return end(new BrokerUnavailableError(`${where}: RabbitMQ cancelled the consumer (the queue was deleted?); subscribing again`))
        const decoded = decodeMessage((name) => headerString(m.properties.headers?.[name]), m.content)
        if (decoded.kind === 'foreign' || decoded.batch.feed !== feed || decoded.batch.epoch !== epoch) {
          const why = decoded.kind === 'foreign' ? decoded.reason : `it is of feed "${decoded.batch.feed}" epoch ${decoded.batch.epoch}`
          this.logger.warn({ feed, queue }, `${where}: skipping a message: ${why}`)
          ack(ch, m)
          return
        }
        queued.push({ changes: decoded.batch.changes, m })
      })
      for (;;) {
        const taken = await queued.take(signal)
        signal.throwIfAborted()
        if (taken.length === 0) throw failure ?? new BrokerUnavailableError(`${where}: the consumer ended`)
        // Acked once the replica has applied them (or found them applied): each on its own, after
        // the one commit of the delivery.
        yield { epoch, changes: mergedChanges(taken), ack: async () => taken.forEach((t) => ack(ch, t.m)) }
      }
    } catch (error) {
      signal.throwIfAborted()
      if (error instanceof BrokerUnavailableError) throw error
      throw failure ?? new BrokerUnavailableError(`${where}: ${(error as Error).message}`, error)
    } finally {
      // The channel first: its close waits for the server's answer, which comes after the acks
      // written before it (closing the connection at once could lose them: redeliveries). A
      // server that does not answer within a second is not waited for.
      if (channel) await closeWithin(channel, 1000)
      await model.close().catch(() => {})
    }
  }
}

/** Acks on a channel that may have closed meanwhile: then the message comes again, and the replica drops it as a duplicate. */
function ack(channel: Channel, m: ConsumeMessage): void {
  try {
    channel.ack(m)
  } catch {
    // closed: see above
  }
}

async function closeWithin(channel: Channel, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([channel.close().catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))])
  clearTimeout(timer)
}
