/**
 * Figure 2 of the source suite: how fast a client reads the log over HTTP from the feed server
 * (same process, 127.0.0.1), against reading the same rows straight from SQLite in-process.
 * Both sides parse every change's JSON, as a replica must before it can apply it.
 */
import Database from 'better-sqlite3'
import { migrate } from '../../src/store/sqlite/schema.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { fileURLToPath } from 'node:url'
import { gc, median, prng, runNodeChild, timeMs, timeSyncMs, type TempDirs } from '../harness.js'
import { ChangesClient } from './changes-client.js'
import { makeCustomer, ownerPragmas } from './customers.js'

/**
 * Fills `feed` with `count` changes through the library API, in 1000-row transactions (a quarter
 * of them updates of earlier keys), then checkpoints the WAL. Returns the rate it wrote at.
 *
 * To save time, the state trigger is off while it writes and the state is rebuilt from the log in
 * one statement at the end (the readers measured here read the log only, but the store is left
 * whole).
 */
export function fillFeed(path: string, feed: string, count: number): number {
  const db = new Database(path)
  ownerPragmas(db)
  const source = new SqliteSource(db)
  try {
    const writer = source.feed(feed)
    const rand = prng(1)
    let nextId = 1
    const write = db.transaction((n: number) => {
      for (let i = 0; i < n; i++) {
        const id = nextId > 1 && rand() < 0.25 ? 1 + Math.floor(rand() * (nextId - 1)) : nextId++
        writer.put(String(id), makeCustomer(id, rand))
      }
    })
    const ms = timeSyncMs(() => {
      for (let done = 0; done < count; done += 1000) write(Math.min(1000, count - done))
    })
    migrate(db)
    db.pragma('wal_checkpoint(TRUNCATE)')
    return count / (ms / 1000)
  } finally {
    source.close()
    db.close()
  }
}

/** Changes per second read straight from SQLite: one query over the feed's log, each row's data parsed. */
export function readFromSqlite(path: string, feed: string): { changes: number; rate: number } {
  const db = new Database(path, { readonly: true })
  try {
    const query = db.prepare('SELECT seq, key, op, data, txs, ts FROM tidemark_changes WHERE feed = ? ORDER BY seq')
    let changes = 0
    let expected = 1
    const ms = timeSyncMs(() => {
      for (const row of query.iterate(feed) as IterableIterator<{ seq: number; data: string | null }>) {
        if (row.seq !== expected++) throw new Error(`SQLite read: seq ${row.seq} out of order`)
        if (row.data !== null) JSON.parse(row.data)
        changes++
      }
    })
    return { changes, rate: changes / (ms / 1000) }
  } finally {
    db.close()
  }
}

/** Changes per second read over HTTP, `limit` changes per request, from 0 to the head. */
export async function readOverHttp(client: ChangesClient, feed: string, head: number, limit: number): Promise<{ changes: number; rate: number }> {
  let after = 0
  let changes = 0
  const ms = await timeMs(async () => {
    while (after < head) {
      const res = await client.changes(feed, after, { limit })
      if (res.last <= after) throw new Error(`GET changes after ${after} returned nothing below the head ${head}`)
      changes += res.changes
      after = res.last
    }
  })
  return { changes, rate: changes / (ms / 1000) }
}

/** The same, from a reader in another process (as a replica is): the child times its own reads. */
export async function readOverHttpFromChild(temp: TempDirs, url: string, feed: string, head: number, limit: number): Promise<{ changes: number; rate: number }> {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const run = await runNodeChild(temp, { args: [fileURLToPath(new URL(`./read-child${ext}`, import.meta.url)), url, feed, String(head), String(limit)] })
  if (run.code !== 0) throw new Error(`the reader process exited with ${run.code}: ${run.stderr.trim()}`)
  return JSON.parse(run.stdout) as { changes: number; rate: number }
}

export interface ReadRates {
  /** Client in the feed server's process. */
  http: number
  /** Client in its own process. */
  httpOtherProcess: number
  sqlite: number
}

/** Alternates the readers `rounds` times; medians. */
export async function measureReads(
  temp: TempDirs,
  path: string,
  url: string,
  feed: string,
  head: number,
  rounds: number,
): Promise<ReadRates> {
  const http: number[] = []
  const child: number[] = []
  const sqlite: number[] = []
  const limit = 100_000
  const client = new ChangesClient(url)
  try {
    for (let round = 0; round < rounds; round++) {
      gc()
      const s = readFromSqlite(path, feed)
      gc()
      const h = await readOverHttp(client, feed, head, limit)
      gc()
      const c = await readOverHttpFromChild(temp, url, feed, head, limit)
      if (s.changes !== head || h.changes !== head || c.changes !== head) {
        throw new Error(`read ${s.changes} (SQLite), ${h.changes} (HTTP) and ${c.changes} (HTTP, other process) changes of ${head}`)
      }
      sqlite.push(s.rate)
      http.push(h.rate)
      child.push(c.rate)
    }
  } finally {
    await client.close()
  }
  return { http: median(http), httpOtherProcess: median(child), sqlite: median(sqlite) }
}
