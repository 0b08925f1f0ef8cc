/**
 * The snapshot prefetcher's thread (snapshot-prefetch.ts): fetches a bootstrap's snapshot chunks
 * with its own HttpFeedSource — the same checks, the same errors — hashes every row for the digest,
 * and posts each page to the replica's thread, at most `ahead` pages before the replica has taken
 * them. The replica's thread spends its time writing, while this one receives, checks and hashes.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { asTidemarkError } from '../../errors.js'
import { bucketOf, rowHashHex } from '../../digest/row-hash.js'
import { HttpFeedSource } from './http-feed-source.js'
import type { SnapshotPage } from '../feed-source.js'
import type { PrefetchJob, WorkerMessage } from './snapshot-prefetch.js'

const job = workerData as PrefetchJob
const port = parentPort
if (port === null) throw new Error('snapshot-worker.ts runs as a worker thread')

let credit = job.ahead
let wake: (() => void) | undefined
port.on('message', () => {
  credit++
  launch()
  wake?.()
})

function post(message: WorkerMessage, transfer: ArrayBuffer[] = []): void {
  ;(port as NonNullable<typeof port>).postMessage(message, transfer)
}

/**
 * A chunk asked for. The next one is asked for as soon as this one's end is known: from the
 * server's header hint (while this body still arrives) or else from the page itself. A hint the
 * page then contradicts (a client-side cut, a server that lied) makes the next request wrong:
 * it is aborted and asked again from what the page really ended with.
 */
interface Fetch {
  after: string | null
  page: Promise<SnapshotPage>
  abort: AbortController
  /** The `after` the next fetch was launched (or queued) with, once known. */
  chained?: { last: string | null; done: boolean }
}

const source = new HttpFeedSource(job.url, job.options)
const inflight: Fetch[] = []
/** The `after` of the next chunk to ask for, when credit allows; undefined: not known yet, or none. */
let queued: string | null | undefined = job.after

function launch(): void {
  if (queued === undefined || credit === 0) return
  credit--
  const after = queued
  queued = undefined
  const abort = new AbortController()
  const f: Fetch = { after, abort, page: Promise.resolve(undefined as unknown as SnapshotPage) }
  f.page = source.snapshot(
    job.feed,
    { after, ...(job.limit === undefined ? {} : { limit: job.limit }), ...(job.epoch === undefined ? {} : { epoch: job.epoch }), signal: abort.signal },
    (ahead) => chain(f, ahead.last, ahead.done),
  )
  f.page.catch(() => {}) // awaited in order below
  inflight.push(f)
}

function chain(f: Fetch, last: string | null, done: boolean): void {
  if (f.chained !== undefined || f !== inflight[inflight.length - 1]) return
  f.chained = { last, done }
  if (!done && last !== null) {
    queued = last
    launch()
  }
}

try {
  launch()
  while (inflight.length > 0) {
    const f = inflight[0] as Fetch
    const page = await f.page
    inflight.shift()
    if (f.chained !== undefined && (f.chained.last !== page.last || f.chained.done !== page.done)) {
      // The hint was wrong: drop what was asked on its word (and the credit it took).
      for (const wrong of inflight.splice(0)) {
        wrong.abort.abort(new Error('the snapshot chunk ended elsewhere than its header said'))
        credit++
      }
      queued = undefined
      f.chained = undefined
    }
    if (f.chained === undefined) {
      inflight.push(f) // chain() wants it last; it is taken out again at once
      chain(f, page.last, page.done)
      inflight.splice(inflight.indexOf(f), 1)
    }
    const n = page.rows.length
    const keys = new Array<string>(n)
    const texts = new Array<string | null>(n)
    const seqs = new Float64Array(n)
    const hashes = Buffer.allocUnsafeSlow(n * 16)
    const buckets = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      const r = page.rows[i] as { key: string; seq: number; dataText: string | null }
      keys[i] = r.key
      seqs[i] = r.seq
      texts[i] = r.dataText
      if (r.dataText !== null) hashes.write(rowHashHex(r.key, r.seq, r.dataText), i * 16, 16, 'hex')
      buckets[i] = bucketOf(r.key)
    }
    post(
      { kind: 'page', epoch: page.epoch, head: page.head, last: page.last, done: page.done, keys, texts, seqs, hashes, buckets },
      [seqs.buffer, hashes.buffer as ArrayBuffer, buckets.buffer],
    )
    if (page.done || page.last === null) break
    // Out of credit with nothing in flight: wait for the replica to take a page.
    while (inflight.length === 0 && queued !== undefined) await new Promise<void>((resolve) => (wake = resolve))
  }
} catch (error) {
  const e = asTidemarkError(error)
  post({ kind: 'error', name: e.name, code: e.code, message: e.message, details: e.details })
} finally {
  for (const f of inflight) f.abort.abort(new Error('the snapshot prefetcher stopped'))
  await source.close()
}
