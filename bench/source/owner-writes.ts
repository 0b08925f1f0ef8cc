/**
 * Figure 1 of the source suite: what tidemark adds to the owner's own writes.
 *
 * The same transactions (half inserts, half updates of ~200-byte customer rows) run against one
 * SQLite file per variant: with no tidemark at all (the baseline), through the library API
 * (`feed.put` in the owner's transaction), and through table capture (triggers installed by
 * `SqliteSourceStore.track`). Breakdown variants take one statement away at a time, so that the
 * table shows which statement of the write path costs what.
 */
import Database, { type Database as Db, type Statement } from 'better-sqlite3'
import { join } from 'node:path'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteFeedWriter, SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { gc, median, timeSyncMs } from '../harness.js'
import { CUSTOMERS_DDL, ownerPragmas, OwnerWorkload, type Customer, type OwnerOp } from './customers.js'

export const FEED = 'customers'

export interface OwnerWriter {
  /** Runs the owner's transactions. */
  run(txs: OwnerOp[][]): void
  close(): Promise<void>
}

export interface Variant {
  name: string
  /** Set for variants that explain the cost of another rather than stand as a figure of their own. */
  breakdown?: boolean
  open(path: string, initial: Customer[], synchronous: Synchronous): Promise<OwnerWriter>
}

/** SQLite's durability setting on the owner's connection: NORMAL (WAL's usual) or FULL (fsync at every commit, SQLite's default). */
export type Synchronous = 'NORMAL' | 'FULL'

/** The owner's own statements, shared by every variant. */
class OwnerTable {
  readonly insert: Statement
  readonly update: Statement

  constructor(readonly db: Db) {
    this.insert = db.prepare('INSERT INTO customers (id, name, email, balance, updated_at) VALUES (?, ?, ?, ?, ?)')
    this.update = db.prepare('UPDATE customers SET balance = ?, updated_at = ? WHERE id = ?')
  }

  static open(path: string, synchronous: Synchronous): OwnerTable {
    const db = new Database(path)
    ownerPragmas(db)
    db.pragma(`synchronous = ${synchronous}`)
    db.exec(CUSTOMERS_DDL)
    return new OwnerTable(db)
  }

  write(op: OwnerOp): void {
    const r = op.row
    if (op.insert) this.insert.run(r.id, r.name, r.email, r.balance, r.updated_at)
    else this.update.run(r.balance, r.updated_at, r.id)
  }

  fill(rows: Customer[], also?: (row: Customer) => void): void {
    this.db.transaction(() => {
      for (const row of rows) {
        this.write({ insert: true, row })
        also?.(row)
      }
    })()
  }
}

function plainWriter(owner: OwnerTable, closeAlso: () => Promise<void> | void = () => {}): OwnerWriter {
  const tx = owner.db.transaction((ops: OwnerOp[]) => {
    for (const op of ops) owner.write(op)
  })
  return {
    run: (txs) => {
      for (const ops of txs) tx(ops)
    },
    close: async () => {
      await closeAlso()
      owner.db.close()
    },
  }
}

function apiWriter(owner: OwnerTable, source: SqliteSource, feed: SqliteFeedWriter): OwnerWriter {
  const tx = owner.db.transaction((ops: OwnerOp[]) => {
    for (const op of ops) {
      owner.write(op)
      feed.put(String(op.row.id), op.row)
    }
  })
  return {
    run: (txs) => {
      for (const ops of txs) tx(ops)
    },
    close: async () => {
      source.close()
      owner.db.close()
    },
  }
}

export const VARIANTS: Variant[] = [
  {
    name: 'plain',
    async open(path, initial, synchronous) {
      const owner = OwnerTable.open(path, synchronous)
      owner.fill(initial)
      return plainWriter(owner)
    },
  },
  {
    name: 'library API',
    async open(path, initial, synchronous) {
      const owner = OwnerTable.open(path, synchronous)
      const source = new SqliteSource(owner.db)
      const feed = source.feed(FEED)
      owner.fill(initial, (row) => feed.put(String(row.id), row))
      return apiWriter(owner, source, feed)
    },
  },
  {
    // The writer learns its transaction's first seq from a read of the committed head on a second
    // connection, once per put: this variant skips that read (its changes carry no tx).
    name: 'API − committed-head read',
    breakdown: true,
    async open(path, initial, synchronous) {
      const owner = OwnerTable.open(path, synchronous)
      const source = new SqliteSource(owner.db)
      source.feed(FEED)
      const feed = new SqliteFeedWriter(owner.db, FEED, () => undefined)
      owner.fill(initial, (row) => feed.put(String(row.id), row))
      return apiWriter(owner, source, feed)
    },
  },
  {
    name: 'table capture',
    async open(path, initial, synchronous) {
      const owner = OwnerTable.open(path, synchronous)
      owner.fill(initial)
      const store = SqliteSourceStore.open(path)
      await store.track({ table: 'customers', keyColumn: 'id', feed: FEED })
      return plainWriter(owner, () => store.close())
    },
  },
  {
    // Triggers that only bump the feed's head: the price of firing a trigger and of the one-row
    // update every change makes, without the log and state inserts.
    name: 'capture: head bump only',
    breakdown: true,
    async open(path, initial, synchronous) {
      const owner = OwnerTable.open(path, synchronous)
      owner.fill(initial)
      const store = SqliteSourceStore.open(path)
      await store.ensureFeed(FEED)
      await store.close()
      for (const event of ['INSERT', 'UPDATE']) {
        owner.db.exec(`CREATE TRIGGER bench_head_${event} AFTER ${event} ON customers BEGIN
          UPDATE tidemark_feeds SET head = head + 1 WHERE name = '${FEED}';
        END`)
      }
      return plainWriter(owner)
    },
  },
]

export interface OwnerWritesOptions {
  dir: string
  txSizes: number[]
  /** Rows written per variant, transaction size and round. */
  rowsPerRun: (txSize: number) => number
  rounds: number
  initialRows: number
  /** Default NORMAL. */
  synchronous?: Synchronous
  /** Only these variants (default: all). */
  variants?: string[]
  signal: AbortSignal
  log: (message: string) => void
}

/** Rows per second of every variant and transaction size: the median over the rounds. */
export type OwnerWriteRates = Map<number, Map<string, number>>

/**
 * Runs every variant on every transaction size, `rounds` times. Within a round the variants run
 * one after the other on identical work, in an order that rotates from round to round, so that
 * the machine's noise spreads over all of them alike.
 */
export async function measureOwnerWrites(options: OwnerWritesOptions): Promise<OwnerWriteRates> {
  const rates: OwnerWriteRates = new Map()
  const variants = VARIANTS.filter((v) => !options.variants || options.variants.includes(v.name))
  const sync = options.synchronous ?? 'NORMAL'
  for (const txSize of options.txSizes) {
    const workload = new OwnerWorkload(txSize)
    const initial = workload.initial(options.initialRows)
    const writers = new Map<string, OwnerWriter>()
    for (const v of variants) writers.set(v.name, await v.open(join(options.dir, `owner-${sync}-${txSize}-${writers.size}.db`), initial, sync))
    const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]))
    try {
      const txCount = Math.max(1, Math.round(options.rowsPerRun(txSize) / txSize))
      // One untimed pass: statements prepared, caches and files warm.
      const warm = workload.transactions(Math.max(1, Math.round(txCount / 10)), txSize)
      for (const w of writers.values()) w.run(warm)
      for (let round = 0; round < options.rounds; round++) {
        options.signal.throwIfAborted()
        const txs = workload.transactions(txCount, txSize)
        const order = variants.map((_, i) => variants[(i + round) % variants.length] as Variant)
        for (const v of order) {
          gc()
          const ms = timeSyncMs(() => (writers.get(v.name) as OwnerWriter).run(txs))
          samples.get(v.name)?.push((txCount * txSize) / (ms / 1000))
        }
      }
    } finally {
      for (const w of writers.values()) await w.close()
    }
    rates.set(txSize, new Map([...samples].map(([name, xs]) => [name, median(xs)])))
    const plain = rates.get(txSize)?.get('plain') as number
    options.log(
      `owner writes (synchronous=${sync}), ${txSize}-row transactions: ${[...(rates.get(txSize) as Map<string, number>)]
        .map(([name, r]) => `${name} ${Math.round(r)} rows/s (${(plain / r).toFixed(2)}×)`)
        .join(', ')}`,
    )
  }
  return rates
}
