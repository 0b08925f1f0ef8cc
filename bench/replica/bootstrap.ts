/**
 * Figure 1 of the replica suite: how fast a new replica bootstraps over HTTP (SQLite source → feed
 * server on 127.0.0.1 → replicator in another process → fresh SQLite replica file, no hook), against
 * a raw in-process copy of the same rows, and how the replicator's peak RSS grows with the feed.
 *
 * The raw copy is what any bootstrap must at least do: read the source's state in key order,
 * `SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND key > ? ORDER BY key LIMIT 5000`,
 * and insert the same rows into a fresh better-sqlite3 file table in transactions of 5000.
 */
import BetterSqlite3 from 'better-sqlite3'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median, rotateRounds, runNodeChild, timeSyncMs, type TempDirs } from '../harness.js'
import { runReplicator } from './replicator.js'
import type { StageJob, StageResult } from './stages-child.js'

const CHUNK = 5000

/** Rows per second of the raw copy of `feed`'s state from the source file into a fresh file `to`. */
export function rawCopy(sourcePath: string, feed: string, to: string): { rows: number; rate: number } {
  const src = new BetterSqlite3(sourcePath, { readonly: true })
  const dst = new BetterSqlite3(to)
  try {
    // The replica store's own settings (SqliteReplicaStore.open): WAL, synchronous = NORMAL.
    dst.pragma('journal_mode = WAL')
    dst.pragma('synchronous = NORMAL')
    dst.exec('CREATE TABLE copy (key TEXT PRIMARY KEY, seq INTEGER, data TEXT) WITHOUT ROWID')
    const read = src.prepare('SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND key > ? ORDER BY key LIMIT ?')
    const insert = dst.prepare('INSERT INTO copy (key, seq, data) VALUES (?, ?, ?)')
    const write = dst.transaction((rows: Array<{ key: string; seq: number; data: string }>) => {
      for (const r of rows) insert.run(r.key, r.seq, r.data)
    })
    let rows = 0
    const ms = timeSyncMs(() => {
      let after = ''
      for (;;) {
        const page = read.all(feed, after, CHUNK) as Array<{ key: string; seq: number; data: string }>
        if (page.length === 0) break
        write(page)
        rows += page.length
        after = (page[page.length - 1] as { key: string }).key
      }
    })
    return { rows, rate: rows / (ms / 1000) }
  } finally {
    src.close()
    dst.close()
  }
}

export interface BootstrapFeed {
  feed: string
  keys: number
  head: number
}

export interface BootstrapRates {
  /** Rows per second, the replicator bootstrapping the big feed over HTTP. */
  replica: number
  /** Rows per second, the raw in-process copy of the big feed. */
  raw: number
  /** The same replicator bootstrapping the small feed (rows per second), for the log. */
  replicaSmall: number
  /** Peak RSS of the replicator process, in bytes, bootstrapping the small and the big feed. */
  rssSmall: number
  rssBig: number
  /** Rows per second of each stage of the big feed's bootstrap run alone (stages-child.ts). */
  stages: Record<StageJob['stage'], number>
}

export interface BootstrapOptions {
  temp: TempDirs
  url: string
  sourcePath: string
  small: BootstrapFeed
  big: BootstrapFeed
  rounds: number
  signal: AbortSignal
  log: (message: string) => void
}

/**
 * Each round: the raw copy of the big feed, the replicator bootstrapping the big feed, and the
 * replicator bootstrapping the small one, in an order that rotates between rounds; each into a new
 * file. Medians over the rounds.
 */
export async function measureBootstrap(o: BootstrapOptions): Promise<BootstrapRates> {
  const raw: number[] = []
  const replica: number[] = []
  const replicaSmall: number[] = []
  const rssBig: number[] = []
  const rssSmall: number[] = []
  const stages: Record<StageJob['stage'], number[]> = { serve: [], fetch: [], write: [] }
  const variants: Array<() => Promise<void>> = [
    async () => {
      const dir = o.temp.make('tidemark-bench-raw-')
      const r = rawCopy(o.sourcePath, o.big.feed, join(dir, 'copy.db'))
      rmSync(dir, { recursive: true, force: true })
      if (r.rows !== o.big.keys) throw new Error(`the raw copy read ${r.rows} rows of ${o.big.keys}`)
      raw.push(r.rate)
    },
    async () => {
      const r = await bootstrapOnce(o, o.big)
      replica.push(r.rate)
      rssBig.push(r.peakRssBytes)
    },
    async () => {
      const r = await bootstrapOnce(o, o.small)
      replicaSmall.push(r.rate)
      rssSmall.push(r.peakRssBytes)
    },
    async () => {
      for (const stage of ['serve', 'fetch', 'write'] as const) stages[stage].push(await stageOnce(o, o.big, stage))
    },
  ]
  await rotateRounds(variants, {
    rounds: o.rounds,
    signal: o.signal,
    afterRound: (round) =>
      o.log(
        `bootstrap round ${round + 1}: raw ${Math.round(raw.at(-1) as number)} rows/s, replica ${Math.round(replica.at(-1) as number)} rows/s ` +
          `(${mb(rssBig.at(-1) as number)}), ${o.small.keys} rows: ${Math.round(replicaSmall.at(-1) as number)} rows/s (${mb(rssSmall.at(-1) as number)}); ` +
          `stages alone: serve ${Math.round(stages.serve.at(-1) as number)}, fetch ${Math.round(stages.fetch.at(-1) as number)}, write ${Math.round(stages.write.at(-1) as number)} rows/s`,
      ),
  })
  return {
    replica: median(replica),
    raw: median(raw),
    replicaSmall: median(replicaSmall),
    rssSmall: median(rssSmall),
    rssBig: median(rssBig),
    stages: { serve: median(stages.serve), fetch: median(stages.fetch), write: median(stages.write) },
  }
}

async function bootstrapOnce(o: BootstrapOptions, feed: BootstrapFeed): Promise<{ rate: number; peakRssBytes: number }> {
  const dir = o.temp.make('tidemark-bench-replica-')
  const r = await runReplicator(o.temp, { url: o.url, feed: feed.feed, path: join(dir, 'replica.db'), target: feed.head })
  rmSync(dir, { recursive: true, force: true })
  if (r.keys !== feed.keys || r.phases[0] !== 'bootstrapping') {
    throw new Error(`bootstrap of ${feed.feed}: ${r.keys} keys of ${feed.keys}, phases ${r.phases.join(' → ')}`)
  }
  return { rate: feed.keys / (r.ms / 1000), peakRssBytes: r.peakRssBytes }
}

const STAGES_CHILD = fileURLToPath(new URL(`./stages-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))

/** Rows per second of one stage of the bootstrap of `feed`, in a process of its own. */
async function stageOnce(o: BootstrapOptions, feed: BootstrapFeed, stage: StageJob['stage']): Promise<number> {
  const dir = o.temp.make('tidemark-bench-stage-')
  const job: StageJob = { stage, url: o.url, feed: feed.feed, sourcePath: o.sourcePath, path: join(dir, 'replica.db'), chunk: 5000 }
  const run = await runNodeChild(o.temp, { args: [STAGES_CHILD, JSON.stringify(job)], timeoutMs: 15 * 60_000 })
  rmSync(dir, { recursive: true, force: true })
  if (run.code !== 0) throw new Error(`bootstrap stage ${stage} exited with ${run.code ?? run.signal}: ${run.stderr.trim()}`)
  const r = JSON.parse(run.stdout) as StageResult
  if (r.rows !== feed.keys) throw new Error(`bootstrap stage ${stage} saw ${r.rows} rows of ${feed.keys}`)
  return r.rows / (r.ms / 1000)
}

export function mb(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20)} MB`
}
