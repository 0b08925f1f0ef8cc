/**
 * The relay's RabbitMQ side. RabbitMQ does not deduplicate what is published, so here it is
 * **leader election** that keeps two relays from interleaving: a relay publishes only while it
 * holds the feed's exclusive lock queue (RabbitMQ gives an exclusive queue to one connection and
 * deletes it when that connection goes); a second relay is refused it and retries with backoff,
 * taking over when the first one's connection ends.
 *
 * Messages go out on a confirm channel; after a page's messages are all confirmed, the relay
 * records the page's last seq in its position queue (one message long), and a restarted relay
 * continues after it. A stopped relay has always recorded what it published; a relay that
 * crashed between a confirm and the record republishes that one page, which replicas drop as
 * duplicates (docs/brokers.md).
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib'
import { BrokerUnavailableError } from '../../errors.js'
import type { Seq } from '../../protocol/types.js'
import { brokerError, type RelaySink } from '../../relay/relay.js'
import { encodeBatch, type BrokerBatch } from '../broker/broker-message.js'
import { amqpConnect, describeUrl, exchangeName, relayQueueName, type AmqpConnectOptions } from './amqp-settings.js'

export interface AmqpSinkOptions extends AmqpConnectOptions {
  /** Messages published and not yet confirmed, at most. Default 64. */
  maxInFlight?: number
}

export class AmqpSink implements RelaySink {
  readonly name = 'amqp'
  private model: ChannelModel | undefined
  private channel: ConfirmChannel | undefined
  private exchange = ''
  private positionQueue = ''
  private epoch = ''
  private last: Seq = 0
  private inFlight: Array<Promise<void>> = []

  constructor(private readonly options: AmqpSinkOptions) {}

  async open(feed: string, epoch: string, signal: AbortSignal): Promise<Seq | null> {
    await this.close()
    signal.throwIfAborted()
    const prefix = this.options.prefix ?? 'tidemark'
    const model = await amqpConnect(this.options)
    this.model = model
    try {
      const lock = await model.createChannel()
      lock.on('error', () => {})
      try {
        await lock.assertQueue(relayQueueName(feed, 'lock', prefix), { exclusive: true })
      } catch (error) {
        throw new BrokerUnavailableError(
          `RabbitMQ ${describeUrl(this.options.url)}: another relay of feed "${feed}" holds ${relayQueueName(feed, 'lock', prefix)}; standing by`,
          error,
        )
      }
      const channel = await model.createConfirmChannel()
      channel.on('error', () => {})
      this.channel = channel
      this.exchange = exchangeName(feed, prefix)
      this.positionQueue = relayQueueName(feed, 'position', prefix)
      this.epoch = epoch
      await channel.assertExchange(this.exchange, 'topic', { durable: true })
      await channel.assertQueue(this.positionQueue, { durable: true, arguments: { 'x-max-length': 1, 'x-overflow': 'drop-head' } })
      const recorded = await channel.get(this.positionQueue, { noAck: false })
      if (!recorded) return null
      channel.nack(recorded, false, true)
      const position = parsePosition(recorded.content)
      return position && position.epoch === epoch ? position.last : null
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw error
      throw brokerError('amqp', `cannot set up the exchange of feed "${feed}"`, error)
    }
  }

  async publish(batch: BrokerBatch): Promise<void> {
    const channel = this.channel
    if (!channel) throw new BrokerUnavailableError('amqp: publish before open')
    const encoded = encodeBatch(batch)
    let room = true
    const confirmed = new Promise<void>((resolve, reject) => {
      room = channel.publish(
        this.exchange,
        batch.epoch,
        encoded.body,
        { persistent: true, messageId: encoded.id, headers: encoded.headers, contentType: 'application/x-ndjson', type: 'tidemark.changes' },
        (error: unknown) => (error ? reject(error) : resolve()),
      )
    })
    confirmed.catch(() => {}) // collected by flush()
    this.inFlight.push(confirmed)
    this.last = batch.last
    if (!room) await new Promise((resolve) => channel.once('drain', resolve))
    if (this.inFlight.length >= (this.options.maxInFlight ?? 64)) await this.settle()
  }

  async flush(): Promise<void> {
    await this.settle()
    const channel = this.channel
    if (!channel) return
    // Everything up to `last` is confirmed: record it, so a restarted relay goes on from there.
    const body = Buffer.from(JSON.stringify({ epoch: this.epoch, last: this.last }))
    await new Promise<void>((resolve, reject) => {
      channel.sendToQueue(this.positionQueue, body, { persistent: true }, (error: unknown) => (error ? reject(brokerError('amqp', 'recording the position failed', error)) : resolve()))
    })
  }

  async close(): Promise<void> {
    this.inFlight = []
    this.channel = undefined
    const model = this.model
    this.model = undefined
    await model?.close().catch(() => {})
  }

  private async settle(): Promise<void> {
    const pending = this.inFlight
    this.inFlight = []
    const results = await Promise.allSettled(pending)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw brokerError('amqp', 'RabbitMQ did not confirm a message', failed.reason)
  }
}

function parsePosition(content: Buffer): { epoch: string; last: Seq } | undefined {
  try {
    const value = JSON.parse(content.toString('utf8')) as { epoch?: unknown; last?: unknown }
    if (typeof value.epoch === 'string' && Number.isSafeInteger(value.last) && (value.last as number) >= 0) return { epoch: value.epoch, last: value.last as number }
  } catch {
    // not ours: treated as no position
  }
  return undefined
}
