import pg from 'pg'
import type { Logger } from '../store.js'
import { HEAD_CHANNEL, type Sequencer } from './sequencer.js'

type Wake = (head: number) => void

/**
 * Wakes long-polls when a feed's head moves, whichever process moved it. Two signals, both running
 * only while somebody waits:
 * - LISTEN on the sequencer's channel: every feed server over the database hears a pass made by
 *   any of them (the NOTIFY is sent by the sequencer, never by owners' transactions, whose commits
 *   would otherwise all queue on PostgreSQL's notification lock);
 * - a tick every `pollMs` that runs a sequencer pass for the waited-on feeds with pending changes
 *   (someone must, when no feed server's maintenance loop is near) and reads their heads: the
 *   safety net for a lost notification or a dropped LISTEN connection.
 */
export class HeadWatcher {
  private readonly waiters = new Map<string, Set<Wake>>()
  private listener: pg.Client | undefined
  private connecting: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly url: string,
    private readonly sequencer: Sequencer,
    private readonly readHeads: (feeds: string[]) => Promise<Map<string, number>>,
    private readonly logger: Logger,
    private readonly pollMs = 20,
  ) {}

  subscribe(feed: string, wake: Wake): () => void {
    let set = this.waiters.get(feed)
    if (!set) this.waiters.set(feed, (set = new Set()))
    set.add(wake)
    this.start()
    return () => {
      set.delete(wake)
      if (set.size === 0) this.waiters.delete(feed)
    }
  }

  /** Wakes the waiters of `feed` with its new head (for passes made through this very store). */
  notify(feed: string, head: number): void {
    for (const wake of [...(this.waiters.get(feed) ?? [])]) wake(head)
  }

  get size(): number {
    let n = 0
    for (const set of this.waiters.values()) n += set.size
    return n
  }

  private start(): void {
    if (this.closed) return
    if (!this.listener && !this.connecting) this.connecting = this.listen().finally(() => (this.connecting = undefined))
    if (!this.timer) this.schedule()
  }

  private schedule(): void {
    if (this.closed || this.waiters.size === 0) return
    this.timer = setTimeout(() => {
      void this.tick().finally(() => {
        this.timer = undefined
        this.schedule()
      })
    }, this.pollMs)
    this.timer.unref()
  }

  /** Two queries whatever the number of feeds waited on, plus a sequencer pass for each with pending changes. */
  private async tick(): Promise<void> {
    if (!this.listener && !this.connecting) this.connecting = this.listen().finally(() => (this.connecting = undefined))
    const feeds = [...this.waiters.keys()]
    try {
      for (const feed of await this.sequencer.pendingFeeds(feeds)) await this.sequencer.run(feed, false)
      // The queue's partitions emptied while long-polls are what sequences it (schema.ts, PENDING_SLOTS).
      await this.sequencer.rotateIfDue()
      for (const [feed, head] of await this.readHeads(feeds)) this.notify(feed, head)
    } catch (error) {
      // The database is away: waiters time out as usual, and the next tick tries again.
      this.logger.debug({ err: error, feeds }, 'long-poll tick failed')
    }
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url })
    client.on('error', () => {
      if (this.listener === client) this.listener = undefined
      void client.end().catch(() => {})
    })
    client.on('notification', (msg) => {
      const payload = msg.payload ?? ''
      const at = payload.lastIndexOf(':')
      if (at > 0) this.notify(payload.slice(0, at), Number(payload.slice(at + 1)))
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${HEAD_CHANNEL}`)
      if (this.closed) {
        await client.end()
        return
      }
      this.listener = client
    } catch (error) {
      this.logger.debug({ err: error }, 'LISTEN connection failed; long-polls rely on the tick until it is back')
      await client.end().catch(() => {})
    }
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    this.timer = undefined
    this.waiters.clear()
    await this.connecting
    const l = this.listener
    this.listener = undefined
    await l?.end().catch(() => {})
  }
}
