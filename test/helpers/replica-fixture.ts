import type { Database } from 'better-sqlite3'
import { join } from 'node:path'
import { after } from 'node:test'
import type { Change, Json } from '../../src/protocol/types.js'
import type { ApplyHook } from '../../src/store/replica-store.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { tmpDir } from './tmp.js'

/** A source store with one feed, a local feed source over it, and a place for replica files. */
export async function sourceFixture(feed = 'customers') {
  const dir = tmpDir()
  const source = SqliteSourceStore.open(join(dir, 'source.db'))
  await source.ensureFeed(feed)
  const local = new LocalFeedSource(source)
  let n = 0
  after(() => source.close())
  return {
    dir,
    feed,
    source,
    local,
    replicaPath: (name = `replica${n++}.db`) => join(dir, name),
    openReplicaStore: (path: string) => {
      const store = SqliteReplicaStore.open(path)
      return store
    },
    /** Writes `count` transactions of `size` puts/deletes over `keys` keys. */
    async write(count: number, size = 1, keys = 50, random: () => number = Math.random) {
      for (let t = 0; t < count; t++) {
        const ops = Array.from({ length: size }, () => {
          const key = `k${Math.floor(random() * keys)}`
          return random() < 0.2 ? { op: 'delete' as const, key } : { op: 'upsert' as const, key, data: { v: random(), t } as Json }
        })
        await source.write(feed, ops)
      }
    },
    /** The source's state as key → { seq, data text }. */
    async sourceState(): Promise<Map<string, { seq: number; data: string }>> {
      const out = new Map<string, { seq: number; data: string }>()
      let afterKey: string | null = null
      for (;;) {
        const chunk = await source.snapshot(feed, afterKey, 1000)
        for (const r of chunk.rows) out.set(r.key, { seq: r.seq, data: JSON.stringify(r.data) })
        if (chunk.done) return out
        afterKey = chunk.last
      }
    },
  }
}

export async function replicaState(store: SqliteReplicaStore, name: string): Promise<Map<string, { seq: number; data: string }>> {
  const out = new Map<string, { seq: number; data: string }>()
  let afterKey: string | null = null
  for (;;) {
    const rows = await store.rows(name, afterKey, 1000)
    for (const r of rows) out.set(r.key, { seq: r.seq, data: JSON.stringify(r.data) })
    if (rows.length < 1000) return out
    afterKey = rows[rows.length - 1]!.key
  }
}

/** A projection hook that mirrors the feed into `projection(key, value)` and counts every change it sees. */
export function projectionHook(): { hook: ApplyHook<Database>; seen: Map<number, number>; install(db: Database): void } {
  const seen = new Map<number, number>()
  return {
    seen,
    install(db: Database) {
      db.exec('CREATE TABLE IF NOT EXISTS projection (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
    },
    hook(change: Change, db: Database) {
      seen.set(change.seq, (seen.get(change.seq) ?? 0) + 1)
      if (change.op === 'upsert') {
        db.prepare('INSERT INTO projection (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
          change.key,
          JSON.stringify(change.data),
        )
      } else db.prepare('DELETE FROM projection WHERE key = ?').run(change.key)
    },
  }
}
