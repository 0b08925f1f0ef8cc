/**
 * The owner's data every source benchmark writes: a `customers` table with rows of about 200
 * bytes as JSON, generated deterministically so that every variant does exactly the same work.
 */
import type { Database } from 'better-sqlite3'
import { prng } from '../harness.js'

export interface Customer {
  [column: string]: string | number
  id: number
  name: string
  email: string
  balance: number
  updated_at: string
}

export const CUSTOMERS_DDL = `CREATE TABLE IF NOT EXISTS customers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT NOT NULL,
  balance INTEGER NOT NULL,
  updated_at TEXT NOT NULL
)`

const WORDS = ['amber', 'birch', 'cedar', 'delta', 'ember', 'fjord', 'gable', 'heron', 'inlet', 'juniper', 'kestrel', 'lagoon', 'marsh', 'nettle', 'osprey', 'pebble']

function words(rand: () => number, length: number): string {
  let out = ''
  while (out.length < length) out += `${out ? ' ' : ''}${WORDS[Math.floor(rand() * WORDS.length)]}`
  return out.slice(0, length)
}

const BASE_TIME = Date.UTC(2026, 0, 1)

/** A customer row whose JSON is about 200 bytes. */
export function makeCustomer(id: number, rand: () => number): Customer {
  const name = words(rand, 48)
  return {
    id,
    name,
    email: `${name.replaceAll(' ', '.')}@example.com`.slice(0, 48),
    balance: Math.floor(rand() * 1_000_000),
    updated_at: new Date(BASE_TIME + Math.floor(rand() * 1e10)).toISOString(),
  }
}

export function updatedCustomer(c: Customer, rand: () => number): Customer {
  return { ...c, balance: Math.floor(rand() * 1_000_000), updated_at: new Date(BASE_TIME + Math.floor(rand() * 1e10)).toISOString() }
}

/** One write of the owner: a new customer, or a new balance for an existing one. */
export interface OwnerOp {
  insert: boolean
  row: Customer
}

/**
 * A deterministic mix of inserts and updates: `txCount` transactions of `txSize` writes, half of
 * them inserts of new ids from `nextId`, half updates of ids already written.
 */
export class OwnerWorkload {
  private readonly rand: () => number
  private readonly rows: Customer[] = []

  constructor(seed: number) {
    this.rand = prng(seed)
  }

  get size(): number {
    return this.rows.length
  }

  /** The rows that exist before the measured writes. */
  initial(count: number): Customer[] {
    const out: Customer[] = []
    for (let i = 0; i < count; i++) out.push(this.insert().row)
    return out
  }

  transactions(txCount: number, txSize: number): OwnerOp[][] {
    const out: OwnerOp[][] = []
    for (let t = 0; t < txCount; t++) {
      const tx: OwnerOp[] = []
      for (let i = 0; i < txSize; i++) tx.push(this.rows.length === 0 || this.rand() < 0.5 ? this.insert() : this.update())
      out.push(tx)
    }
    return out
  }

  private insert(): OwnerOp {
    const row = makeCustomer(this.rows.length + 1, this.rand)
    this.rows.push(row)
    return { insert: true, row }
  }

  private update(): OwnerOp {
    const i = Math.floor(this.rand() * this.rows.length)
    const row = updatedCustomer(this.rows[i] as Customer, this.rand)
    this.rows[i] = row
    return { insert: false, row }
  }
}

/** The owner's connection settings for the benchmarks: WAL, synchronous=NORMAL. */
export function ownerPragmas(db: Database): void {
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('busy_timeout = 10000')
}
