/**
 * The replica's JetStream side: an ordered consumer on the feed's stream, filtered to the replica's
 * epoch subject, starting at the first message that goes past the checkpoint. It needs no acks:
 * the replica's checkpoint is its position, and a new subscription seeks again from it.
 *
 * The seek is a binary search over stream sequences by the `Tidemark-Last` header (messages are in
 * seq order within an epoch; older epochs' messages come first). Its answer is only an
 * optimisation: starting early costs duplicates the replica drops, starting late a gap it pulls
 * from the log. Every delivery is checked by the replica anyway (planDelivery), so nothing here
 * has to be right for the replica to stay exact.
 *
 * The subscription ends with BrokerUnavailableError when the connection is cut, the stream is gone
 * or was recreated (its creation time changed: deleted and made again, or a broker whose store was
 * wiped); the replica — or FallbackTransport, which long-polls the log meanwhile — subscribes again.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream'
import { BrokerUnavailableError } from '../../errors.js'
import type { Seq } from '../../protocol/types.js'
import { silentLogger, type Logger } from '../../store/store.js'
import { decodeMessage, readHeaders } from '../broker/broker-message.js'
import { mergedChanges, MessageQueue } from '../broker/message-queue.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../transport.js'
import { describeServers, feedSubject, natsConnect, streamName, type NatsConnectOptions } from './nats-settings.js'

export interface NatsTransportOptions extends NatsConnectOptions {
  /** How often to check that the stream is still the one subscribed to (ms). Default 5 000. */
  checkMs?: number
  /** Messages the consumer may buffer ahead of the replica. Default 16. */
  buffer?: number
  /** Changes of the messages waiting that one delivery takes at most (MessageQueue; default 10,000). */
  maxDeliveryChanges?: number
  logger?: Logger
}

export class NatsTransport implements ChangeTransport {
  readonly name = 'nats'
  private readonly logger: Logger

  constructor(private readonly options: NatsTransportOptions) {
    this.logger = options.logger ?? silentLogger
  }

  async *subscribe(feed: string, options: SubscribeOptions): AsyncGenerator<Delivery> {
    const { epoch, position, signal } = options
    signal.throwIfAborted()
    const prefix = this.options.prefix ?? 'tidemark'
    const stream = streamName(feed, prefix)
    const subject = feedSubject(feed, epoch, prefix)
    const where = `NATS ${describeServers(this.options.servers)} stream ${stream}`
    const nc = await natsConnect(this.options)
    let messages: ConsumerMessages | undefined
    let failure: BrokerUnavailableError | undefined
    const end = (error: BrokerUnavailableError | undefined): void => {
      failure ??= error
      messages?.stop()
    }
    const onAbort = (): void => end(undefined)
    signal.addEventListener('abort', onAbort, { once: true })
    void nc.closed().then((error) => end(new BrokerUnavailableError(`${where}: the connection closed${error ? `: ${error.message}` : ''}`, error)))
    let check: NodeJS.Timeout | undefined
    try {
      const jsm = await jetstreamManager(nc)
      const info = await streamInfo(jsm, stream, where)
      const start = await seek(jsm, info, epoch, position())
      const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start })
      messages = await consumer.consume({ max_messages: this.options.buffer ?? 16 })
      if (failure || signal.aborted) messages.stop()
      let lastStreamSeq = start - 1
      check = setInterval(() => {
        streamInfo(jsm, stream, where)
          .then((now) => {
            if (now.created !== info.created) end(new BrokerUnavailableError(`${where} was recreated (created ${now.created}, was ${info.created}); subscribing again`))
            else if (now.state.last_seq < lastStreamSeq) end(new BrokerUnavailableError(`${where} went back to sequence ${now.state.last_seq} from ${lastStreamSeq}; subscribing again`))
          })
          .catch((error: unknown) => {
            // Only an answer ends the subscription: a check that timed out (a busy process, a slow
            // server) says nothing about the stream, and a lost connection ends it by itself.
            if (/not found/i.test((error as Error).message)) end(new BrokerUnavailableError(`${where}: the stream is gone; subscribing again`, error))
          })
      }, this.options.checkMs ?? 5000)
      // A pump decodes messages as they come and queues them; the replica takes all that wait as
      // one delivery (MessageQueue). The pump waits while the queue is full: backpressure.
      const queued = new MessageQueue(this.options.maxDeliveryChanges)
      const consumed = messages
      const pump = (async () => {
        try {
          for await (const m of consumed) {
            lastStreamSeq = m.seq
            const decoded = decodeMessage((name) => m.headers?.get(name) || undefined, m.data)
            if (decoded.kind === 'foreign') {
              this.logger.warn({ feed, stream, seq: m.seq }, `${where}: skipping message ${m.seq}: ${decoded.reason}`)
              continue
            }
            const { batch } = decoded
            if (batch.feed !== feed || batch.epoch !== epoch) {
              this.logger.warn({ feed, stream, seq: m.seq }, `${where}: skipping message ${m.seq} of feed "${batch.feed}" epoch ${batch.epoch} (this replica follows "${feed}" epoch ${epoch})`)
              continue
            }
            queued.push(batch)
            await queued.room()
          }
        } catch (error) {
          failure ??= new BrokerUnavailableError(`${where}: ${(error as Error).message}`, error)
        } finally {
          queued.close()
        }
      })()
      try {
        for (;;) {
          const taken = await queued.take(signal)
          if (taken.length === 0) break
          yield { epoch, changes: mergedChanges(taken) }
        }
      } finally {
        consumed.stop()
        queued.close() // a pump waiting for room must not wait for a taker that is gone
        await pump
      }
      signal.throwIfAborted()
      throw failure ?? new BrokerUnavailableError(`${where}: the consumer ended`)
    } catch (error) {
      signal.throwIfAborted()
      if (error instanceof BrokerUnavailableError) throw error
      throw failure ?? new BrokerUnavailableError(`${where}: ${(error as Error).message}`, error)
    } finally {
      clearInterval(check)
      signal.removeEventListener('abort', onAbort)
      messages?.stop()
      if (!nc.isClosed()) await nc.close().catch(() => {})
    }
  }
}

async function streamInfo(jsm: JetStreamManager, stream: string, where: string): Promise<StreamInfo> {
  try {
    return await jsm.streams.info(stream)
  } catch (error) {
    throw new BrokerUnavailableError(`${where}: ${(error as Error).message} (is a relay running for this feed?)`, error)
  }
}

/** The first stream sequence whose message goes past `checkpoint` in `epoch` (binary search; see above). */
async function seek(jsm: JetStreamManager, info: StreamInfo, epoch: string, checkpoint: Seq): Promise<number> {
  let lo = Math.max(1, info.state.first_seq)
  let hi = info.state.last_seq + 1
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    const m = await jsm.streams.getMessage(info.config.name, { seq: mid })
    const head = m ? readHeaders((name) => m.header.get(name) || undefined) : undefined
    if (head && head.epoch === epoch && head.last > checkpoint) hi = mid
    else lo = mid + 1
  }
  return lo
}
