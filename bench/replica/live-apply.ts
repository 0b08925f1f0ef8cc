/**
 * Figure 2 of the replica suite: how fast a bootstrapped replica applies the owner's changes, apply
 * only. The owner's transactions (100 upserts each over the feed's key space) are written first;
 * then a replicator in another process starts from a copy of a replica file whose checkpoint is
 * just before them, and is timed from `run()` until its checkpoint reaches the last one. It fetches
 * them over HTTP from the feed server as it does live (long-poll transport), either with its default
 * of up to 5000 changes per request (a replica that is behind takes them in big deliveries, each
 * applied in one transaction), or one source transaction per request.
 *
 * The baseline is the least any copy must do: the same transactions, as they are stored (key, seq,
 * data as JSON text), upserted 100 rows per transaction into a fresh better-sqlite3 file table that
 * already holds the same initial rows as the replica.
 */
import BetterSqlite3 from 'better-sqlite3'
import { copyFileSync, existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { SourceStore } from '../../src/store/store.js'
import { median, rotateRounds, timeSyncMs, type TempDirs } from '../harness.js'
import { fillKeys, writeUpserts, type Owner, type WrittenRow } from './feeds.js'
import { runReplicator } from './replicator.js'

/** Upserts per second of `txs`, one transaction each, into a table already holding `initial`. */
export function rawUpserts(path: string, initial: readonly WrittenRow[], txs: readonly WrittenRow[][]): number {
  const db = new BetterSqlite3(path)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.exec('CREATE TABLE copy (key TEXT PRIMARY KEY, seq INTEGER, data TEXT) WITHOUT ROWID')
    const upsert = db.prepare(
      'INSERT INTO copy (key, seq, data) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, data = excluded.data',
    )
    const write = db.transaction((rows: readonly WrittenRow[]) => {
      for (const r of rows) upsert.run(r.key, r.seq, r.data)
    })
    write(initial)
    db.pragma('wal_checkpoint(TRUNCATE)')
    let changes = 0
    const ms = timeSyncMs(() => {
      for (const tx of txs) {
        write(tx)
        changes += tx.length
      }
    })
    return changes / (ms / 1000)
  } finally {
    db.close()
  }
}

export interface LiveApplyOptions {
  temp: TempDirs
  url: string
  owner: Owner
  store: SourceStore
  feed: string
  /** Keys the replica holds before the changes (also the key space of the upserts). */
  keys: number
  txCount: number
  txSize: number
  rounds: number
  signal: AbortSignal
  log: (message: string) => void
}

export interface LiveApplyRates {
  changes: number
  /** Changes per second: the raw upserts, the replicator with its default deliveries, one transaction per request. */
  raw: number
  replica: number
  replicaPerTx: number
}

export async function measureLiveApply(o: LiveApplyOptions): Promise<LiveApplyRates> {
  const initial = fillKeys(o.owner, o.feed, o.keys, { seed: 21, keep: true })
  await o.store.maintain()

  // The replica at the checkpoint before the changes: bootstrapped once, then copied for every run.
  const template = join(o.temp.make('tidemark-bench-live-'), 'replica.db')
  const boot = await runReplicator(o.temp, { url: o.url, feed: o.feed, path: template, target: initial.head })
  if (boot.keys !== o.keys) throw new Error(`the live replica bootstrapped ${boot.keys} keys of ${o.keys}`)
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(template + suffix)) throw new Error(`the replicator left ${template + suffix} behind: its store did not close cleanly`)
  }

  const txs = writeUpserts(o.owner, o.feed, { seed: 22, txCount: o.txCount, txSize: o.txSize, keySpace: o.keys })
  const last = (txs.at(-1)?.at(-1) as WrittenRow).seq
  const changes = last - initial.head
  o.log(`live apply: replica at ${initial.head} with ${o.keys} keys; ${changes} changes written after it`)

  const raw: number[] = []
  const replica: number[] = []
  const perTx: number[] = []
  const catchUp = async (limit: number | undefined): Promise<number> => {
    const dir = o.temp.make('tidemark-bench-live-')
    const path = join(dir, 'replica.db')
    copyFileSync(template, path)
    const r = await runReplicator(o.temp, { url: o.url, feed: o.feed, path, target: last, ...(limit ? { limit } : {}) })
    rmSync(dir, { recursive: true, force: true })
    if (r.from !== initial.head || r.phases[0] !== 'catching-up') {
      throw new Error(`live apply: the replica started at ${r.from} (expected ${initial.head}), phases ${r.phases.join(' → ')}`)
    }
    return changes / (r.ms / 1000)
  }
  const variants: Array<() => Promise<void>> = [
    async () => {
      const dir = o.temp.make('tidemark-bench-live-raw-')
      raw.push(rawUpserts(join(dir, 'raw.db'), initial.rows, txs))
      rmSync(dir, { recursive: true, force: true })
    },
    async () => void replica.push(await catchUp(undefined)),
    async () => void perTx.push(await catchUp(o.txSize)),
  ]
  await rotateRounds(variants, {
    rounds: o.rounds,
    signal: o.signal,
    afterRound: (round) =>
      o.log(
        `live apply round ${round + 1}: raw ${Math.round(raw.at(-1) as number)} changes/s, replica ${Math.round(replica.at(-1) as number)}/s, ` +
          `one tx per request ${Math.round(perTx.at(-1) as number)}/s`,
      ),
  })
  return { changes, raw: median(raw), replica: median(replica), replicaPerTx: median(perTx) }
}
