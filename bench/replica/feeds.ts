/**
 * The source side of the replica benchmarks: feeds filled through the owner's API
 * (`SqliteSource(db).feed(name).put`) in big transactions on the owner's own connection, with rows of
 * about 200 bytes as JSON (the source suite's customers). The state a snapshot reads is folded in by
 * the store's indexer (`store.maintain()`), which the caller runs once its feeds are written.
 */
import BetterSqlite3, { type Database } from 'better-sqlite3'
import type { Seq } from '../../src/protocol/types.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { prng } from '../harness.js'
import { makeCustomer, ownerPragmas } from '../source/customers.js'

/** One change as a baseline writes it: the key, the seq the source gave it, and the data as stored (JSON text). */
export interface WrittenRow {
  key: string
  seq: Seq
  data: string
}

/** The owner's connection to the source file and the writer of one feed. */
export class Owner {
  readonly db: Database
  private readonly source: SqliteSource

  constructor(path: string) {
    this.db = new BetterSqlite3(path)
    ownerPragmas(this.db)
    this.source = new SqliteSource(this.db)
  }

  feed(name: string): ReturnType<SqliteSource['feed']> {
    return this.source.feed(name)
  }

  close(): void {
    this.source.close()
    this.db.close()
  }
}

/**
 * Writes keys `1..count` (as strings) to `feed`, one new customer each, in transactions of `txSize`.
 * Returns the feed's head afterwards. With `keep`, also returns every row as stored (for a baseline).
 */
export function fillKeys(owner: Owner, feed: string, count: number, options: { seed: number; txSize?: number; keep?: boolean }): { head: Seq; rows: WrittenRow[] } {
  const writer = owner.feed(feed)
  const rand = prng(options.seed)
  const txSize = options.txSize ?? 10_000
  const rows: WrittenRow[] = []
  let head = 0
  const write = owner.db.transaction((from: number, to: number) => {
    for (let id = from; id < to; id++) {
      const row = makeCustomer(id, rand)
      const key = String(id)
      head = writer.put(key, row)
      if (options.keep) rows.push({ key, seq: head, data: JSON.stringify(row) })
    }
  })
  for (let from = 1; from <= count; from += txSize) write(from, Math.min(count + 1, from + txSize))
  return { head, rows }
}

/**
 * `txCount` transactions of `txSize` upserts of keys drawn from `1..keySpace` (a new customer row
 * for the key each time). Returns the transactions as stored, seq by seq.
 */
export function writeUpserts(owner: Owner, feed: string, options: { seed: number; txCount: number; txSize: number; keySpace: number }): WrittenRow[][] {
  const writer = owner.feed(feed)
  const rand = prng(options.seed)
  const txs: WrittenRow[][] = []
  const write = owner.db.transaction(() => {
    const tx: WrittenRow[] = []
    for (let i = 0; i < options.txSize; i++) {
      const id = 1 + Math.floor(rand() * options.keySpace)
      const row = makeCustomer(id, rand)
      const key = String(id)
      tx.push({ key, seq: writer.put(key, row), data: JSON.stringify(row) })
    }
    txs.push(tx)
  })
  for (let t = 0; t < options.txCount; t++) write()
  return txs
}
