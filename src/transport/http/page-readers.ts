/**
 * Reading one `changes` or `snapshot` listing line by line, checking what the protocol promises of
 * a page as a whole: changes contiguous from `after + 1` and ending on a transaction boundary, rows
 * in key order after `after`, an end line that agrees with what came before it. A listing that
 * stops without its end line was cut (ProtocolError); one whose end line has another epoch than its
 * header was read across a reset of the feed (EpochChangedError: re-bootstrap).
 */
import { compareKeys } from '../../protocol/key-order.js'
import { EpochChangedError, ProtocolError, type TidemarkError } from '../../errors.js'
import type { StoredChange, StoredRow } from '../../protocol/encoded.js'
import type { Seq } from '../../protocol/types.js'
import type { ChangesPage, SnapshotPage } from '../feed-source.js'
import { decodeChangesLine, decodeSnapshotLine, excerpt, isSeq } from './wire-lines.js'

export interface PageReader<Page> {
  /** Items read so far, for messages. */
  readonly count: number
  /** Whether the end line has come (the listing is whole: nothing to cut). */
  readonly complete: boolean
  line(text: string): void
  /** The page, once the body has ended; ProtocolError when it was cut (`partialBytes` of a line left over). */
  finish(partialBytes: number): Page
  /**
   * The page as far as it can be used now, for a client that stops reading a listing that has grown
   * too large: whole transactions (changes) or the rows so far (snapshot). Undefined when there is
   * nothing whole yet.
   */
  cut(): Page | undefined
}

/** Rebuilds the error a listing ended with (an `{"error":…}` line). */
export type ErrorLineHandler = (body: Record<string, unknown>) => TidemarkError

export class ChangesPageReader implements PageReader<ChangesPage> {
  private readonly changes: StoredChange[] = []
  private next: Seq
  /** The tx of the transaction under way, or 0 at a boundary. */
  private openTx: Seq = 0
  /** How many changes end on the last transaction boundary so far. */
  private whole = 0
  private end: { epoch: string; head: Seq; last: Seq } | undefined

  constructor(
    private readonly feed: string,
    private readonly after: Seq,
    /** The epoch the response's header announced. */
    private readonly epoch: string,
    private readonly onError: ErrorLineHandler,
  ) {
    this.next = after + 1
  }

  get count(): number {
    return this.changes.length
  }

  get complete(): boolean {
    return this.end !== undefined
  }

  line(text: string): void {
    if (this.end) throw new ProtocolError(`a line follows the end line of the changes listing: ${excerpt(text)}`)
    const decoded = decodeChangesLine(text)
    if (decoded.kind === 'error') throw this.onError(decoded.error)
    if (decoded.kind === 'end') {
      this.end = this.checkEnd(decoded.end)
      return
    }
    const c = decoded.item
    if (c.seq !== this.next) {
      const what = c.seq < this.next ? (c.seq === this.next - 1 ? 'repeats' : 'goes back to') : `skips to`
      throw new ProtocolError(`the changes listing after ${this.after} ${what} seq ${c.seq} where ${this.next} was due`)
    }
    if (this.openTx !== 0 && c.tx !== this.openTx) {
      throw new ProtocolError(`change ${c.seq} has tx ${c.tx} inside the transaction ending at ${this.openTx}`)
    }
    this.openTx = c.seq === c.tx ? 0 : c.tx
    this.next++
    this.changes.push(c)
    if (this.openTx === 0) this.whole = this.changes.length
  }

  cut(): ChangesPage | undefined {
    if (this.end || this.whole === 0) return undefined
    const changes = this.changes.slice(0, this.whole)
    const last = (changes[changes.length - 1] as StoredChange).seq
    return { epoch: this.epoch, head: last, changes, last }
  }

  private checkEnd(end: Record<string, unknown>): { epoch: string; head: Seq; last: Seq } {
    const { epoch, head, last } = end
    if (typeof epoch !== 'string' || !isSeq(head) || !isSeq(last)) {
      throw new ProtocolError(`the changes listing's end line needs epoch, head and last: ${excerpt(JSON.stringify(end))}`)
    }
    // The feed was reset while the listing was read: what came belongs to the old history.
    if (epoch !== this.epoch) throw new EpochChangedError(this.feed, this.epoch, epoch)
    const sent = this.next - 1
    if (last !== sent) throw new ProtocolError(`the changes listing's end line says last ${last}, but the last change sent was ${sent}`)
    if (this.changes.length > 0 && head < sent) throw new ProtocolError(`the changes listing sent change ${sent} but ended at head ${head}`)
    if (this.openTx !== 0) {
      throw new ProtocolError(`the changes listing ended inside a transaction: change ${sent} belongs to the transaction ending at ${this.openTx}`)
    }
    return { epoch, head, last }
  }

  finish(partialBytes: number): ChangesPage {
    if (!this.end) {
      const mid = partialBytes > 0 ? ` (mid-line, ${partialBytes} bytes into the next)` : ''
      throw new ProtocolError(`response cut after ${this.changes.length} changes${mid}: the listing has no end line`)
    }
    return { epoch: this.end.epoch, head: this.end.head, changes: this.changes, last: this.end.last }
  }
}

export class SnapshotPageReader implements PageReader<SnapshotPage> {
  private readonly rows: StoredRow[] = []
  private lastKey: string | null
  private end: { epoch: string; head: Seq; last: string | null; done: boolean } | undefined

  constructor(
    private readonly feed: string,
    private readonly after: string | null,
    private readonly limit: number | undefined,
    private readonly epoch: string,
    private readonly onError: ErrorLineHandler,
    /** The position the chunk was read at, from its header; needed to use a chunk cut short. */
    private readonly headerHead?: Seq,
  ) {
    this.lastKey = after
  }

  cut(): SnapshotPage | undefined {
    const head = this.headerHead
    if (this.end || this.rows.length === 0 || head === undefined) return undefined
    for (const row of this.rows) {
      if (row.seq > head) throw new ProtocolError(`the snapshot chunk read at head ${head} has row ${excerpt(row.key, 80)} at seq ${row.seq}`)
    }
    return { epoch: this.epoch, head, rows: this.rows, last: this.lastKey, done: false }
  }

  get count(): number {
    return this.rows.length
  }

  get complete(): boolean {
    return this.end !== undefined
  }

  line(text: string): void {
    if (this.end) throw new ProtocolError(`a line follows the end line of the snapshot chunk: ${excerpt(text)}`)
    const decoded = decodeSnapshotLine(text)
    if (decoded.kind === 'error') throw this.onError(decoded.error)
    if (decoded.kind === 'end') {
      this.end = this.checkEnd(decoded.end)
      return
    }
    const row = decoded.item
    if (this.lastKey !== null && compareKeys(row.key, this.lastKey) <= 0) {
      throw new ProtocolError(`the snapshot chunk has key ${excerpt(row.key, 80)} after ${excerpt(this.lastKey, 80)}: keys must rise`)
    }
    if (this.limit !== undefined && this.rows.length >= this.limit) {
      throw new ProtocolError(`the snapshot chunk has more than the ${this.limit} rows asked for`)
    }
    this.lastKey = row.key
    this.rows.push(row)
  }

  private checkEnd(end: Record<string, unknown>): { epoch: string; head: Seq; last: string | null; done: boolean } {
    const { epoch, head, last, done, rows } = end
    if (typeof epoch !== 'string' || !isSeq(head) || !(typeof last === 'string' || last === null) || typeof done !== 'boolean') {
      throw new ProtocolError(`the snapshot chunk's end line needs epoch, head, last and done: ${excerpt(JSON.stringify(end))}`)
    }
    // Keys only have to rise, so a row lost from the middle of a chunk would go unseen without the count.
    if (rows !== this.rows.length) {
      throw new ProtocolError(`the snapshot chunk's end line counts ${excerpt(String(rows), 20)} rows, but ${this.rows.length} were sent`)
    }
    if (epoch !== this.epoch) throw new EpochChangedError(this.feed, this.epoch, epoch)
    if (last !== this.lastKey) {
      throw new ProtocolError(`the snapshot chunk's end line says last ${excerpt(String(last), 80)}, but the last key sent was ${excerpt(String(this.lastKey), 80)}`)
    }
    for (const row of this.rows) {
      if (row.seq > head) throw new ProtocolError(`the snapshot chunk read at head ${head} has row ${excerpt(row.key, 80)} at seq ${row.seq}`)
    }
    return { epoch, head, last, done }
  }

  finish(partialBytes: number): SnapshotPage {
    if (!this.end) {
      const mid = partialBytes > 0 ? ` (mid-line, ${partialBytes} bytes into the next)` : ''
      throw new ProtocolError(`response cut after ${this.rows.length} rows${mid}: the snapshot chunk has no end line`)
    }
    return { epoch: this.end.epoch, head: this.end.head, rows: this.rows, last: this.end.last, done: this.end.done }
  }
}

