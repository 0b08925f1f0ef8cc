/**
 * The default transport: long-polls the log through any FeedSource. Each request asks for what
 * follows the replica's checkpoint as it is when the request starts, so a delivery always follows
 * on. One exception, bounded to one page: after a full page (the replica is behind, more is there
 * now) the next page is read while the replica applies this one, so reading and applying overlap;
 * it is delivered only if the replica's checkpoint is then where that page starts, else dropped.
 */
import type { ChangesPage, FeedSource } from '../feed-source.js'
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
    let ahead: ReadAhead | undefined
    try {
      for (;;) {
        signal.throwIfAborted()
        const after = position()
        const request = ahead?.after === after ? ahead.request : undefined
        if (request === undefined) ahead?.cancel()
        ahead = undefined
        const started = this.now()
        const page = await (request ?? this.source.changes(feed, { after, limit: this.limit, waitMs: this.waitMs, epoch, signal }))
        const held = request === undefined && this.waitMs > 0 && this.now() - started >= this.waitMs / 2
        if (page.changes.length >= this.limit) ahead = this.readAhead(feed, page.last, epoch, signal)
        yield { epoch: page.epoch, changes: page.changes, head: page.head }
        if (page.changes.length === 0 && !held) await this.sleep(this.idlePauseMs, signal)
      }
    } finally {
      ahead?.cancel()
    }
  }

  private readAhead(feed: string, after: number, epoch: string, signal: AbortSignal): ReadAhead {
    const own = new AbortController()
    const request = this.source.changes(feed, { after, limit: this.limit, waitMs: this.waitMs, epoch, signal: AbortSignal.any([signal, own.signal]) })
    request.catch(() => {}) // awaited when delivered; a dropped one must not count as unhandled
    return { after, request, cancel: () => own.abort() }
  }
}

interface ReadAhead {
  after: number
  request: Promise<ChangesPage>
  /** Aborts the request (one not delivered: the replica's checkpoint went elsewhere). */
  cancel(): void
}
