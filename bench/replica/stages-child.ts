/**
 * One stage of a bootstrap alone, in its own process (argv[2] is a StageJob as JSON), so that the
 * bench can say where a bootstrap's time goes:
 *
 * - `serve`: the feed server's part — every snapshot chunk requested over HTTP and its body only
 *   drained (the end line read for the next `after`): read, encode and send, no parsing.
 * - `fetch`: the replica's client on top — the same chunks as the replica takes them,
 *   `HttpFeedSource.snapshotPages` (received, checked and hashed on the prefetcher's thread),
 *   nothing written.
 * - `write`: the replica store's part — the same rows read straight from the source file and
 *   hashed as the prefetcher hashes them (untimed), written through `writeSnapshotChunk`, then
 *   `finishBootstrap`; only the store's calls timed.
 *
 * Prints `{ rows, ms }`.
 */
import BetterSqlite3 from 'better-sqlite3'
import { request } from 'undici'
import { HashedRow } from '../../src/digest/hashed-row.js'
import { bucketOf, rowHashHex } from '../../src/digest/row-hash.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { nowMs } from '../harness.js'

export interface StageJob {
  stage: 'serve' | 'fetch' | 'write'
  url: string
  feed: string
  /** The source's SQLite file (stage `write` reads its state). */
  sourcePath: string
  /** The replica file to create (stage `write`). */
  path: string
  chunk: number
}

export interface StageResult {
  rows: number
  ms: number
}

const job = JSON.parse(process.argv[2] as string) as StageJob

async function serve(): Promise<StageResult> {
  let after: string | null = null
  let rows = 0
  const started = nowMs()
  for (;;) {
    const query = new URLSearchParams({ limit: String(job.chunk), ...(after === null ? {} : { after }) })
    const res = await request(`${job.url}/v1/feeds/${encodeURIComponent(job.feed)}/snapshot?${query}`)
    if (res.statusCode !== 200) throw new Error(`snapshot answered ${res.statusCode}: ${await res.body.text()}`)
    let tail = ''
    for await (const part of res.body) tail = (tail + (part as Buffer).toString('latin1')).slice(-4096)
    const endLine = tail.slice(tail.lastIndexOf('\n', tail.length - 2) + 1)
    const end = JSON.parse(endLine) as { last: string | null; done: boolean; rows: number }
    rows += end.rows
    if (end.done || end.last === null) break
    after = end.last
  }
  return { rows, ms: nowMs() - started }
}

async function fetchAll(): Promise<StageResult> {
  const source = new HttpFeedSource(job.url)
  try {
    let rows = 0
    const started = nowMs()
    for await (const page of source.snapshotPages(job.feed, { after: null, limit: job.chunk })) rows += page.rows.length
    return { rows, ms: nowMs() - started }
  } finally {
    await source.close()
  }
}

async function write(): Promise<StageResult> {
  const src = new BetterSqlite3(job.sourcePath, { readonly: true })
  const store = SqliteReplicaStore.open(job.path)
  try {
    const read = src.prepare('SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT ?')
    const head = (src.prepare('SELECT head FROM tidemark_feeds WHERE name = ?').pluck().get(job.feed) as number | undefined) ?? 0
    await store.claim(job.feed, job.feed, job.url)
    await store.beginBootstrap(job.feed, 'bench', head)
    let after = ''
    let rows = 0
    let ms = 0
    for (;;) {
      const page = (read.all(job.feed, after, job.chunk) as Array<{ key: string; seq: number; data: string }>).map(
        (r) => new HashedRow(r.key, r.seq, r.data, Buffer.from(rowHashHex(r.key, r.seq, r.data), 'hex'), bucketOf(r.key)),
      )
      const last = page[page.length - 1]
      const done = page.length < job.chunk
      const t = nowMs()
      await store.writeSnapshotChunk(job.feed, page, { afterKey: last?.key ?? after, readHead: head, done })
      ms += nowMs() - t
      rows += page.length
      if (done || !last) break
      after = last.key
    }
    const t = nowMs()
    await store.finishBootstrap(job.feed)
    ms += nowMs() - t
    return { rows, ms }
  } finally {
    src.close()
    await store.close()
  }
}

const result = job.stage === 'serve' ? await serve() : job.stage === 'fetch' ? await fetchAll() : await write()
process.stdout.write(`${JSON.stringify(result)}\n`)
