/**
 * The relay: reads a feed's log in seq order (from a SourceStore in-process or a feed server over
 * HTTP, both as a FeedSource) and publishes it to a broker as messages of whole source transactions.
 * The broker part is a RelaySink (`src/transport/nats/nats-sink.ts`, `src/transport/amqp/amqp-sink.ts`).
 *
 * Where it starts: the sink says how far the broker already holds this epoch (`open`), and the relay
 * continues right after that, so a restarted relay does not publish a change twice. A broker that
 * holds nothing of the epoch gets the changes from the feed's head on (`startAt: 'log'`: from the
 * start of its log): replicas that are behind see the first message not follow on and pull what
 * precedes it from the log.
 *
 * Several relays for one feed: each sink says how it keeps them from interleaving (JetStream:
 * publishing is conditional on the stream's last message, so a relay that lost the race resyncs;
 * RabbitMQ: one relay holds an exclusive lock queue, the others wait). docs/brokers.md.
 */
import { BrokerUnavailableError, TidemarkError, asTidemarkError } from '../errors.js'
import type { Seq } from '../protocol/types.js'
import { silentLogger, type Logger } from '../store/store.js'
import { Backoff } from '../transport/backoff.js'
import { splitIntoBatches, type BrokerBatch } from '../transport/broker/broker-message.js'
import { LifeCycle } from '../util/life-cycle.js'
import { PositionWaiters } from '../util/position-waiters.js'
import type { FeedSource } from '../transport/feed-source.js'

/**
 * What a relay puts in one message at most (docs/brokers.md, "Wire format"). Each message is one
 * apply transaction for a replica: 2,000 changes a message delivered 1.3–1.5× the rate of 500 to 50
 * replicas (measured side by side); 512 KiB stays under NATS's default 1 MiB max_payload.
 */
export const MESSAGE_DEFAULTS = { maxChanges: 2000, maxBytes: 512 * 1024 } as const

export interface RelaySink {
  /** `nats` or `amqp`, for messages. */
  readonly name: string
  /**
   * Connects (creating the stream or exchange when missing) and returns the last seq of `epoch`
   * the broker already holds, or null when it holds nothing of it.
   */
  open(feed: string, epoch: string, signal: AbortSignal): Promise<Seq | null>
  /** Queues one message; resolves when the broker may take more (backpressure), not when confirmed. */
  publish(batch: BrokerBatch): Promise<void>
  /** Resolves when every message queued so far is confirmed by the broker; rejects if one was refused. */
  flush(): Promise<void>
  close(): Promise<void>
}

export interface RelayOptions {
  source: FeedSource
  feed: string
  sink: RelaySink
  /** Changes per message at most (whole transactions; one larger transaction is one message). Default 2 000. */
  maxChangesPerMessage?: number
  /** Body bytes per message, about. Default 512 KiB (under NATS's 1 MiB default max_payload). */
  maxBytesPerMessage?: number
  /** Changes read from the log per page. Default 5 000. */
  pageSize?: number
  /** Long-poll wait at the head, in ms. Default 25 000. */
  waitMs?: number
  backoff?: Backoff
  logger?: Logger
  /**
   * Where a relay starts when the broker holds nothing of the feed's epoch: at the head (default:
   * replicas get what came before from the log), or at the start of the log — for a feed found
   * after the relays started, none of whose changes any relay published.
   */
  startAt?: 'head' | 'log'
}

export interface RelayStatus {
  feed: string
  sink: string
  epoch: string | null
  /** The last seq the broker confirmed. */
  published: Seq
  messages: number
  connected: boolean
  lastError: string | null
}

export class Relay {
  private readonly options: RelayOptions
  private readonly backoff: Backoff
  private readonly logger: Logger
  private readonly life: LifeCycle
  private epoch: string | null = null
  private published: Seq = 0
  private messages = 0
  private connected = false
  private lastError: string | null = null
  private readonly waiters = new PositionWaiters()

  constructor(options: RelayOptions) {
    this.options = options
    this.backoff = options.backoff ?? new Backoff({ capMs: 5000 })
    this.logger = options.logger ?? silentLogger
    this.life = new LifeCycle(`the relay of feed "${options.feed}"`)
  }

  status(): RelayStatus {
    return {
      feed: this.options.feed,
      sink: this.options.sink.name,
      epoch: this.epoch,
      published: this.published,
      messages: this.messages,
      connected: this.connected,
      lastError: this.lastError,
    }
  }

  /** Runs until stopped (resolves) or a failure retrying cannot fix (rejects: an unknown feed, a refused token). */
  run(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal, (inner) => this.loop(inner))
  }

  stop(): Promise<void> {
    return this.life.stop()
  }

  /** Resolves when the broker has confirmed everything up to `seq` (tests, benchmarks). */
  confirmedUpTo(seq: Seq): Promise<void> {
    if (this.published >= seq) return Promise.resolve()
    return this.waiters.wait(seq)
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const { sink } = this.options
    while (!signal.aborted) {
      try {
        await this.session(signal)
      } catch (error) {
        if (signal.aborted) break
        const e = asTidemarkError(error)
        if (e.code === 'unknown-feed' || e.code === 'unauthorized' || e.code === 'forbidden') {
          await sink.close().catch(() => {})
          throw e
        }
        this.connected = false
        this.lastError = e.message
        const pause = this.backoff.next()
        this.logger.warn({ feed: this.options.feed, err: e.message, code: e.code, retryInMs: pause }, `relay ${this.options.feed} → ${sink.name}: ${e.message}; resyncing in ${pause} ms`)
        await sink.close().catch(() => {})
        await this.backoff.sleep(pause, signal).catch(() => {})
      }
    }
    await sink.close().catch(() => {})
  }

  /** One connection's worth: learn where the broker is, then publish from there until something fails. */
  private async session(signal: AbortSignal): Promise<void> {
    const { source, feed, sink } = this.options
    const info = await source.info(feed, signal)
    const epoch = info.epoch
    const held = await sink.open(feed, epoch, signal)
    // Nothing of this epoch in the broker: a relay that was publishing it goes on from what it had
    // confirmed (the stream or exchange was deleted, the broker lost its store); a new one from the head.
    const resumed = held === null && this.epoch === epoch && this.published <= info.head ? this.published : null
    const fresh = this.options.startAt === 'log' ? Math.min(info.head, Math.max(0, info.minSeq - 1)) : info.head
    let position = held ?? resumed ?? fresh
    if (held !== null && held > info.head) {
      // Not something this feed's history wrote (a forged message, a stream of a source since
      // restored): waiting for the log to pass it would stall the relay, so start from the head.
      this.logger.warn({ feed, held, head: info.head }, `relay ${feed}: the broker claims epoch ${epoch} up to ${held}, past the feed's head ${info.head}; publishing from the head`)
      position = info.head
    }
    this.epoch = epoch
    this.connected = true
    this.setPublished(position)
    this.logger.info(
      { feed, epoch, position, sink: sink.name },
      held === null
        ? `relay ${feed} → ${sink.name}: the broker holds nothing of epoch ${epoch}; publishing from ${resumed !== null ? '' : position === info.head ? 'the head, ' : 'the start of the log, '}${position}`
        : `relay ${feed} → ${sink.name}: the broker holds epoch ${epoch} up to ${held}; continuing from there`,
    )
    const maxChanges = this.options.maxChangesPerMessage ?? MESSAGE_DEFAULTS.maxChanges
    const maxBytes = this.options.maxBytesPerMessage ?? MESSAGE_DEFAULTS.maxBytes
    for (;;) {
      signal.throwIfAborted()
      // An EpochChangedError ends the session: what is published of the old history stays, and the
      // next session starts the new one (on its own subject / routing key).
      const page = await source.changes(feed, { after: position, limit: this.options.pageSize ?? 5000, waitMs: this.options.waitMs ?? 25_000, epoch, signal })
      if (page.changes.length === 0) {
        if (page.head < position) throw new TidemarkError('epoch-changed', `feed "${feed}" is at ${page.head}, behind what was published (${position}) with the same epoch: it was restored; resyncing`)
        continue
      }
      for (const batch of splitIntoBatches(feed, epoch, page.changes, maxChanges, maxBytes)) {
        await sink.publish(batch)
        this.messages++
      }
      position = page.last
      await sink.flush()
      this.setPublished(position)
      this.backoff.reset()
    }
  }

  private setPublished(seq: Seq): void {
    this.published = seq
    this.waiters.settle(seq)
  }
}

export function createRelay(options: RelayOptions): Relay {
  return new Relay(options)
}

/** For sinks: wraps a broker client's failure so the relay logs it and resyncs. */
export function brokerError(sink: string, what: string, cause: unknown): BrokerUnavailableError {
  return new BrokerUnavailableError(`${sink}: ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause)
}
