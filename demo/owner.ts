import { prng as random } from '../src/util/prng.js'
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3'
import type { Seq } from '../src/protocol/types.js'
import { SqliteSource, type SqliteFeedWriter } from '../src/store/sqlite/sqlite-source.js'

const FIRST = ['Ada', 'Alan', 'Barbara', 'Claude', 'Donald', 'Edsger', 'Frances', 'Grace', 'Hedy', 'John', 'Katherine', 'Leslie', 'Margaret', 'Niklaus', 'Radia', 'Tony']
const LAST = ['Allen', 'Backus', 'Cerf', 'Dijkstra', 'Engelbart', 'Floyd', 'Goldberg', 'Hamilton', 'Hopper', 'Knuth', 'Lamport', 'Liskov', 'Perlman', 'Ritchie', 'Turing', 'Wirth']
const CITIES = ['Lisbon', 'Oslo', 'Kyoto', 'Nairobi', 'Lima', 'Quebec', 'Tartu', 'Perth']
const PLANS = ['free', 'team', 'business']

interface Customer {
  id: number
  name: string
  email: string
  city: string
  plan: string
}

export interface OwnerStats {
  transactions: number
  changes: number
  inserts: number
  updates: number
  deletes: number
  /** Transactions that changed several customers at once. */
  multiRow: number
  /** Live customers now. */
  customers: number
}


/**
 * The owning service of the demo: its own `customers` table in owner.db, written through the
 * library's source API in its own transactions (`feed.put` / `feed.delete` beside each write), at
 * a steady rate, from a timer that yields to the event loop between rounds.
 */
export class Owner {
  readonly db: Database
  readonly stats: OwnerStats = { transactions: 0, changes: 0, inserts: 0, updates: 0, deletes: 0, multiRow: 0, customers: 0 }
  private readonly source: SqliteSource
  private readonly feed: SqliteFeedWriter
  private readonly upsert: Statement
  private readonly remove: Statement
  private readonly select: Statement
  private readonly rand = random(42)
  /** Live ids, for picking one at random; `where` maps an id to its index (swap-remove on delete). */
  private readonly ids: number[] = []
  private readonly where = new Map<number, number>()
  private nextId = 1
  private timer: NodeJS.Timeout | undefined

  constructor(path: string, feedName: string) {
    this.db = new BetterSqlite3(path)
    this.db.exec(`CREATE TABLE IF NOT EXISTS customers (
      id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, city TEXT NOT NULL, plan TEXT NOT NULL)`)
    this.source = new SqliteSource(this.db)
    this.feed = this.source.feed(feedName)
    this.upsert = this.db.prepare(
      `INSERT INTO customers (id, name, email, city, plan) VALUES (@id, @name, @email, @city, @plan)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, city = excluded.city, plan = excluded.plan`,
    )
    this.remove = this.db.prepare('DELETE FROM customers WHERE id = ?')
    this.select = this.db.prepare('SELECT id, name, email, city, plan FROM customers WHERE id = ?')
  }

  /** Inserts `count` customers, `batch` to a transaction. */
  seed(count: number, batch = 1000): void {
    for (let done = 0; done < count; ) {
      const n = Math.min(batch, count - done)
      this.db.transaction(() => {
        for (let i = 0; i < n; i++) this.insert()
      })()
      done += n
    }
    this.stats.transactions = 0
    this.stats.changes = 0
    this.stats.inserts = 0
  }

  /** Writes about `perSecond` transactions a second until stop(). */
  start(perSecond: number): void {
    const started = performance.now()
    let done = 0
    const round = (): void => {
      const due = Math.floor(((performance.now() - started) / 1000) * perSecond)
      // At most a tenth of a second's worth at once: after a pause, do not make up for it in one burst.
      const burst = Math.ceil(perSecond / 10)
      for (let n = Math.min(due - done, burst); n > 0; n--, done++) this.transaction()
      done = Math.max(done, due - burst)
      this.timer = setTimeout(round, 10)
    }
    this.timer = setTimeout(round, 10)
  }

  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  close(): void {
    this.stop()
    this.source.close()
    this.db.close()
  }

  /** The owner's own rows as key → name (the key as the feed spells it). */
  names(): Map<string, string> {
    const out = new Map<string, string>()
    for (const r of this.db.prepare('SELECT id, name FROM customers').iterate() as IterableIterator<{ id: number; name: string }>) {
      out.set(String(r.id), r.name)
    }
    return out
  }

  /** One transaction of the owner's business: mostly single updates, some inserts and deletes, some several rows at once. */
  private transaction(): Seq {
    const r = this.rand()
    let last = 0
    this.db.transaction(() => {
      if (r < 0.45 && this.ids.length > 0) last = this.update(this.pick())
      else if (r < 0.65 || this.ids.length < 10) last = this.insert()
      else if (r < 0.75) last = this.delete(this.pick())
      else {
        // A household moves: a few customers change city together, and one of them may leave.
        const city = this.choose(CITIES)
        const n = 2 + Math.floor(this.rand() * 4)
        for (let i = 0; i < n; i++) last = this.update(this.pick(), { city })
        if (this.rand() < 0.3) last = this.delete(this.pick())
        this.stats.multiRow++
      }
    })()
    this.stats.transactions++
    return last
  }

  private insert(): Seq {
    const id = this.nextId++
    const first = this.choose(FIRST)
    const last = this.choose(LAST)
    const c: Customer = { id, name: `${first} ${last}`, email: `${first}.${last}${id}@example.com`.toLowerCase(), city: this.choose(CITIES), plan: this.choose(PLANS) }
    this.upsert.run(c)
    this.where.set(id, this.ids.length)
    this.ids.push(id)
    this.stats.inserts++
    this.stats.customers = this.ids.length
    return this.put(c)
  }

  private update(id: number, change: Partial<Customer> = {}): Seq {
    const row = this.select.get(id) as Customer
    const c: Customer = { ...row, ...(Object.keys(change).length > 0 ? change : this.rand() < 0.5 ? { plan: this.choose(PLANS) } : { name: `${this.choose(FIRST)} ${row.name.split(' ')[1]}` }) }
    this.upsert.run(c)
    this.stats.updates++
    return this.put(c)
  }

  private delete(id: number): Seq {
    this.remove.run(id)
    const at = this.where.get(id) as number
    const moved = this.ids.pop() as number
    if (moved !== id) {
      this.ids[at] = moved
      this.where.set(moved, at)
    }
    this.where.delete(id)
    this.stats.deletes++
    this.stats.changes++
    this.stats.customers = this.ids.length
    return this.feed.delete(String(id))
  }

  private put(c: Customer): Seq {
    this.stats.changes++
    return this.feed.put(String(c.id), { ...c })
  }

  private pick(): number {
    return this.ids[Math.floor(this.rand() * this.ids.length)] as number
  }

  private choose<T>(from: readonly T[]): T {
    return from[Math.floor(this.rand() * from.length)] as T
  }
}
