/**
 * A bootstrap's snapshot chunks fetched ahead on another thread (snapshot-worker.ts). The replica's
 * writer is synchronous (better-sqlite3): while it writes a chunk, its own thread can neither read
 * the next answer off the socket nor check and hash it, so fetching the next chunk on that thread
 * overlaps nothing but the kernel's buffering. On a thread of its own the next pages are received,
 * checked (the same HttpFeedSource, so the same ProtocolErrors) and hashed while this one writes —
 * the rows arrive as HashedRow, which the SQLite replica store writes without hashing again.
 *
 * Bounded: the worker runs at most `ahead` pages in front of what the replica has taken. It is
 * ended when the pages run out, when the consumer stops early (`return`), or on `signal`.
 */
import { Worker } from 'node:worker_threads'
import {
  BadRequestError,
  ConflictError,
  EpochChangedError,
  LogTruncatedError,
  ProtocolError,
  StoreUnavailableError,
  TidemarkError,
  TooLargeError,
  UnknownFeedError,
  type ErrorCode,
} from '../../errors.js'
import { HashedRow } from '../../digest/hashed-row.js'
import type { Seq } from '../../protocol/types.js'
import type { SnapshotPage, SnapshotRequest } from '../feed-source.js'
import type { HttpFeedSourceOptions } from './http-feed-source.js'

/** What the worker is given (workerData): everything cloneable. */
export interface PrefetchJob {
  url: string
  options: HttpFeedSourceOptions
  feed: string
  after: string | null
  limit: number | undefined
  epoch: string | undefined
  ahead: number
}

export type WorkerMessage =
  | {
      kind: 'page'
      epoch: string
      head: Seq
      last: string | null
      done: boolean
      keys: string[]
      texts: Array<string | null>
      seqs: Float64Array
      hashes: Uint8Array
      buckets: Int32Array
    }
  | { kind: 'error'; name: string; code: ErrorCode; message: string; details: Record<string, unknown> }

/** Pages fetched ahead by default: one being written, one ready, one on the wire. */
export const PREFETCH_AHEAD = 2

const FROM_SOURCE = import.meta.url.endsWith('.ts')
const WORKER = new URL(`./snapshot-worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url)

/** The worker; run from TypeScript sources (the tests), through tsx, which a worker does not inherit. */
function startWorker(job: PrefetchJob): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER, { workerData: job })
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER.href)}) })`
  return new Worker(boot, { eval: true, workerData: job })
}

/** The snapshot from `request.after` on, page by page, each as `HttpFeedSource.snapshot` answers it. */
export async function* prefetchSnapshot(url: string, options: HttpFeedSourceOptions, feed: string, request: SnapshotRequest, ahead = PREFETCH_AHEAD): AsyncGenerator<SnapshotPage> {
  const signal = request.signal
  signal?.throwIfAborted()
  const job: PrefetchJob = { url, options, feed, after: request.after, limit: request.limit, epoch: request.epoch, ahead }
  const worker = startWorker(job)
  // Bounded by `ahead` (the worker waits for credit), so this queue is too.
  const queue: WorkerMessage[] = []
  let failure: Error | undefined
  let notify: (() => void) | undefined
  const wakeUp = () => {
    const n = notify
    notify = undefined
    n?.()
  }
  worker.on('message', (m: WorkerMessage) => {
    queue.push(m)
    wakeUp()
  })
  worker.on('error', (error: Error) => {
    failure ??= new StoreUnavailableError(`the snapshot prefetcher's thread failed: ${error.message}`, error)
    wakeUp()
  })
  worker.on('exit', () => {
    failure ??= new StoreUnavailableError('the snapshot prefetcher\'s thread ended before the snapshot did')
    wakeUp()
  })
  const onAbort = () => {
    failure = signal?.reason instanceof Error ? signal.reason : new Error('aborted')
    wakeUp()
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for (;;) {
      while (queue.length === 0 && failure === undefined) await new Promise<void>((resolve) => (notify = resolve))
      const m = queue.shift()
      if (signal?.aborted) throw signal.reason
      if (m === undefined) throw failure as Error
      if (m.kind === 'error') throw reviveError(m, feed, request.epoch)
      worker.postMessage('more')
      const rows: HashedRow[] = new Array<HashedRow>(m.keys.length)
      const hashes = Buffer.from(m.hashes.buffer, m.hashes.byteOffset, m.hashes.byteLength)
      for (let i = 0; i < rows.length; i++) {
        const text = m.texts[i] as string | null
        rows[i] = new HashedRow(m.keys[i] as string, m.seqs[i] as number, text, text === null ? null : hashes.subarray(i * 16, i * 16 + 16), m.buckets[i] as number)
      }
      yield { epoch: m.epoch, head: m.head, rows, last: m.last, done: m.done }
      if (m.done || m.last === null) return
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await worker.terminate()
  }
}

/** The worker's error as the class the replica decides by (it was one before crossing threads). */
function reviveError(m: Extract<WorkerMessage, { kind: 'error' }>, feed: string, epoch: string | undefined): TidemarkError {
  const d = m.details
  switch (m.name) {
    case 'EpochChangedError':
      return new EpochChangedError(feed, epoch ?? '', String(d.epoch))
    case 'LogTruncatedError':
      return new LogTruncatedError(feed, Number(d.after), Number(d.minSeq))
    case 'UnknownFeedError':
      return new UnknownFeedError(feed)
    case 'StoreUnavailableError':
      return new StoreUnavailableError(m.message)
    case 'ProtocolError':
      return new ProtocolError(m.message, { details: d })
    case 'BadRequestError':
      return new BadRequestError(m.message, { details: d })
    case 'ConflictError':
      return new ConflictError(m.message)
    case 'TooLargeError':
      return new TooLargeError(m.message)
    default:
      return new TidemarkError(m.code, m.message, { details: d })
  }
}
