/**
 * The default transport: long-polls the log through any FeedSource. Each request asks for what
 * follows the replica's checkpoint as it is when the request starts, so a delivery always follows
 * on and nothing is queued: the next request is made only when the replica asks for the next
 * delivery (after applying the last one).
 */
import type { FeedSource } from '../feed-source.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../transport.js'
import { sleep as timerSleep, type Sleep } from '../backoff.js'

export interface LongPollOptions {
  /** How long the server may hold a request open for changes, in ms (default 25 000). */
  waitMs?: number
  /** Changes per request; whole transactions may exceed it (default 5 000). */
  limit?: number
  /**
   * Pause before asking again after an empty answer the server did not hold (a server without
   * long-poll, one shutting down, `waitMs: 0`), so the loop does not spin; in ms (default 1 000).
   */
  idlePauseMs?: number
  now?: () => number
  sleep?: Sleep
}

export class LongPollTransport implements ChangeTransport {
  readonly name = 'http'
  private readonly waitMs: number
  private readonly limit: number
  private readonly idlePauseMs: number
  private readonly now: () => number
  private readonly sleep: Sleep

  constructor(
    private readonly source: FeedSource,
    options: LongPollOptions = {},
  ) {
    this.waitMs = options.waitMs ?? 25_000
    this.limit = options.limit ?? 5000
    this.idlePauseMs = options.idlePauseMs ?? 1000
    this.now = options.now ?? Date.now
    this.sleep = options.sleep ?? timerSleep
  }

  /**
   * Deliveries until `signal` aborts (then it throws the signal's reason) or a request fails (then
   * it throws that error: the replica decides whether to back off, re-bootstrap or stop). A
   * long-poll that times out yields an empty delivery, so the replica still learns the head.
   */
  async *subscribe(feed: string, options: SubscribeOptions): AsyncGenerator<Delivery> {
    const { epoch, position, signal } = options
    for (;;) {
      signal.throwIfAborted()
      const started = this.now()
      const page = await this.source.changes(feed, { after: position(), limit: this.limit, waitMs: this.waitMs, epoch, signal })
      const held = this.waitMs > 0 && this.now() - started >= this.waitMs / 2
      yield { epoch: page.epoch, changes: page.changes, head: page.head }
      if (page.changes.length === 0 && !held) await this.sleep(this.idlePauseMs, signal)
    }
  }
}
