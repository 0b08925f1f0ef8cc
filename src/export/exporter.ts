/**
 * Exporting a feed: the rows exactly as the feed's state at one position, read without blocking
 * the owner. A file has one position, but the snapshot is read in short chunks at rising heads, so
 * the rows must be merged with the log up to the last chunk's head first — which is exactly what a
 * replica's bootstrap does. The export therefore bootstraps a throwaway replica in a scratch store
 * (the same code, the same proof), stops it the moment it is consistent, and writes that copy out in
 * key order with its checkpoint as the file's position. docs/export-format.md explains why this is
 * exact, and what it costs (a scratch file about the size of the feed's state).
 */
import { TidemarkError } from '../errors.js'
import type { StateRow } from '../protocol/types.js'
import { createReplica } from '../replica/replica.js'
import { openScratchReplicaStore } from '../store/open.js'
import type { ReplicaStore } from '../store/replica-store.js'
import { silentLogger, type Logger } from '../store/store.js'
import type { FeedSource, SnapshotPage, SnapshotRequest } from '../transport/feed-source.js'
import { demoted } from './demoted-logger.js'
import { DEFAULT_COMPRESSION, EXPORT_FORMAT, EXPORT_VERSION, type Compression, type ExportHeader } from './export-format.js'
import { writeExport } from './export-writer.js'

/** The scratch replica's name. */
const STAGED = 'export'
/** Rows read from the scratch copy at a time, while writing the file. */
const PAGE_ROWS = 5000

export interface ExportProgress {
  /** `reading`: copying the feed at the source; `writing`: writing the file from the copy. */
  phase: 'reading' | 'writing'
  rows: number
  /** The feed's live keys when the export began (reading), or the file's rows (writing). */
  total: number
}

export interface ExportOptions {
  source: FeedSource
  feed: string
  /** Where the scratch copy goes: it needs about as much room as the feed's state takes in SQLite. */
  scratchDir: string
  /** Signs the file with HMAC-SHA-256 under this shared key. */
  key?: Uint8Array
  compression?: Compression
  /** Rows per snapshot request. */
  snapshotChunk?: number
  signal?: AbortSignal
  logger?: Logger
  onProgress?: (progress: ExportProgress) => void
  now?: () => number
}

export interface PreparedExport {
  header: ExportHeader
  /** The file's bytes. The scratch copy is deleted once they are read, or the reading stops. */
  body: AsyncIterable<Buffer>
  /** Deletes the scratch copy, for a body that will not be read. */
  dispose(): Promise<void>
}

/** Copies the feed at one position into a scratch store; the file is then written from there. */
export async function prepareExport(options: ExportOptions): Promise<PreparedExport> {
  const { source, feed, signal, onProgress } = options
  const logger = options.logger ?? silentLogger
  // The scratch replica's life (claimed, bootstrapping, stopped) is the export's business, not the operator's.
  const inner = demoted(logger)
  signal?.throwIfAborted()
  // Fails at once on an unknown feed or a refused token, before any scratch file exists.
  const info = await source.info(feed, signal)
  const scratch = openScratchReplicaStore(options.scratchDir, inner)
  try {
    let read = 0
    const counting = countingSource(source, (rows) => {
      read += rows
      onProgress?.({ phase: 'reading', rows: read, total: info.keys })
    })
    const consistent = new AbortController()
    const onAbort = (): void => consistent.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    const replica = createReplica({
      source: counting,
      feed,
      store: scratch.store,
      name: STAGED,
      logger: inner,
      ...(options.snapshotChunk !== undefined ? { snapshotChunk: options.snapshotChunk } : {}),
      // Bootstrapped: the copy is the feed's state at its checkpoint. Stop before following the feed.
      onPhase: (change) => {
        if (change.to === 'catching-up') consistent.abort()
      },
    })
    try {
      await replica.run(consistent.signal)
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    signal?.throwIfAborted()
    const state = await scratch.store.state(STAGED)
    if (state === null || state.epoch === null || state.gen === 0) {
      throw new TidemarkError('internal', `the export's copy of feed "${feed}" stopped before it was consistent`)
    }
    const header: ExportHeader = {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      feed,
      epoch: state.epoch,
      position: state.seq,
      rows: state.keys,
      createdAt: new Date((options.now ?? Date.now)()).toISOString(),
      source: source.description,
      compression: options.compression ?? DEFAULT_COMPRESSION,
      checksum: 'sha256',
      signature: options.key === undefined ? null : 'hmac-sha256',
    }
    logger.debug({ feed, epoch: header.epoch, position: header.position, rows: header.rows }, `export of feed "${feed}": ${header.rows} rows at position ${header.position}`)
    const rows = stagedRows(scratch.store, header.rows, signal, onProgress)
    const key = options.key
    async function* body(): AsyncGenerator<Buffer> {
      try {
        yield* writeExport(header, rows, key === undefined ? {} : { key })
      } finally {
        await scratch.dispose()
      }
    }
    return { header, body: body(), dispose: () => scratch.dispose() }
  } catch (error) {
    await scratch.dispose()
    throw error
  }
}

async function* stagedRows(
  store: ReplicaStore,
  total: number,
  signal: AbortSignal | undefined,
  onProgress: ExportOptions['onProgress'],
): AsyncGenerator<StateRow[]> {
  let after: string | null = null
  let written = 0
  for (;;) {
    signal?.throwIfAborted()
    const rows = await store.rows(STAGED, after, PAGE_ROWS)
    if (rows.length === 0) return
    yield rows
    written += rows.length
    onProgress?.({ phase: 'writing', rows: written, total })
    if (rows.length < PAGE_ROWS) return
    after = (rows[rows.length - 1] as StateRow).key
  }
}

/** The source as it is (whatever it can do), counting the snapshot rows it hands out (for progress). */
function countingSource(source: FeedSource, onRows: (n: number) => void): FeedSource {
  const snapshot = async (feed: string, request: SnapshotRequest): Promise<SnapshotPage> => {
    const page = await source.snapshot(feed, request)
    onRows(page.rows.length)
    return page
  }
  return new Proxy(source, {
    get(target, prop) {
      if (prop === 'snapshot') return snapshot
      const value = Reflect.get(target, prop, target) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}
