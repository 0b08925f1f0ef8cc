import { StoredChange } from '../../protocol/encoded.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { Change, Seq } from '../../protocol/types.js'

/** A live row of a generation as the diff reads it. */
export interface DataRow {
  key: string
  seq: number
  data: string
}

/** Rows read per page when diffing two generations. */
export const DIFF_PAGE = 1000

/** A page the diff needs: generation `gen`'s live rows with keys above `after`, in key order, `limit` of them. */
export interface PageRequest {
  gen: number
  after: string
  limit: number
}

/** One generation's live rows in key order, given a page at a time (see GenerationDiff). */
class PagedCursor {
  private page: DataRow[] = []
  private i = 0
  private after = ''
  private done = false
  constructor(readonly gen: number) {}

  /** The page to read before `peek` can answer, or null. */
  wanted(): PageRequest | null {
    return this.i < this.page.length || this.done ? null : { gen: this.gen, after: this.after, limit: DIFF_PAGE }
  }

  give(rows: DataRow[]): void {
    this.page = rows
    this.i = 0
    if (rows.length < DIFF_PAGE) this.done = true
    const last = rows[rows.length - 1]
    if (last !== undefined) this.after = last.key
  }

  peek(): DataRow | undefined {
    return this.page[this.i]
  }

  next(): void {
    this.i++
  }
}

/**
 * The difference between two generations of a replica as the changes a projection hook sees at a
 * bootstrap's swap (ReplicaStore.finishBootstrap): a delete for each key only the old one holds, an
 * upsert for each key new or at another seq in the new one, in key order (the stores' own order,
 * UTF-8 bytes: compareKeys). It does no I/O: the backend reads each page it asks for, so the same
 * merge serves a synchronous driver and an asynchronous one, and pages (rather than an open
 * iterator) leave the connection free for the hook's writes.
 *
 *   for (;;) {
 *     const want = diff.wanted()
 *     if (want !== null) { diff.give(readPage(want)); continue }
 *     const step = diff.step()
 *     if (step === undefined) break
 *     if (step !== null) hook(step)
 *   }
 */
export class GenerationDiff {
  private readonly old: PagedCursor
  private readonly cur: PagedCursor
  private pending: PagedCursor | null = null

  constructor(
    from: number,
    to: number,
    /** The new checkpoint: the seq of every delete, and the position of every change. */
    private readonly at: Seq,
    private readonly ts: number,
  ) {
    this.old = new PagedCursor(from)
    this.cur = new PagedCursor(to)
  }

  /** The page to read and `give` before the next `step`, or null. */
  wanted(): PageRequest | null {
    const want = this.old.wanted()
    this.pending = want === null ? this.cur : this.old
    return want ?? this.cur.wanted()
  }

  give(rows: DataRow[]): void {
    ;(this.pending ?? this.cur).give(rows)
    this.pending = null
  }

  /** The next change; null: a key both hold alike (nothing to see); undefined: the end. Only once `wanted()` is null. */
  step(): Change | null | undefined {
    const o = this.old.peek()
    const n = this.cur.peek()
    if (o === undefined && n === undefined) return undefined
    const order = o === undefined ? 1 : n === undefined ? -1 : compareKeys(o.key, n.key)
    if (order < 0) {
      this.old.next()
      return new StoredChange(this.at, (o as DataRow).key, 'delete', this.at, this.ts, null)
    }
    const row = n as DataRow
    this.cur.next()
    if (order === 0) this.old.next()
    if (order > 0 || (o as DataRow).seq !== row.seq) return new StoredChange(row.seq, row.key, 'upsert', this.at, this.ts, row.data)
    return null
  }
}
