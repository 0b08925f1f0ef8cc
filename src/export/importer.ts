/**
 * Importing an export file into a replica: the rows become a new generation of the replica, with
 * its digest, and the swap makes it current at checkpoint (epoch, position) in one transaction; a
 * later `replicate` simply catches up from there (or re-bootstraps when the source's epoch changed
 * or its log no longer reaches back to the position).
 *
 * The file is read twice: once to check all of it (checksum, signature, rows) before anything is
 * written, once to write it (checking it again, in case it changed in between). Until the swap the
 * replica's current copy and checkpoint are untouched; a failure cancels the unfinished generation.
 * A process killed mid-write leaves that generation behind as a bootstrap in progress, made only of
 * checked rows exact at the file's position: `replicate` finishes it from the source (which is
 * correct: see docs/export-format.md), and a new import starts it over.
 */
import { ConflictError } from '../errors.js'
import type { ApplyHook, ReplicaState, ReplicaStore } from '../store/replica-store.js'
import { ExportFileError, type ExportHeader } from './export-format.js'
import { openExport, type ExportInput, type ReadExportOptions, type ReadResult } from './export-reader.js'

export interface ImportProgress {
  /** `checking`: the first read, nothing written; `writing`: the second. */
  phase: 'checking' | 'writing'
  rows: number
  total: number
}

export interface CheckOptions {
  key?: Uint8Array
  /** Refuse a file of any other feed. */
  feed?: string
  signal?: AbortSignal
  onProgress?: (progress: ImportProgress) => void
}

export interface CheckedExport extends ReadResult {
  header: ExportHeader
}

/** Reads the whole file and checks everything about it; writes nothing. Throws ExportFileError. */
export async function checkExport(input: ExportInput, options: CheckOptions = {}): Promise<CheckedExport> {
  const reader = await openExport(input, readOptions(options))
  let rows = 0
  for (;;) {
    const r = await reader.rows.next()
    if (r.done) return { header: reader.header, ...r.value }
    rows += r.value.length
    options.onProgress?.({ phase: 'checking', rows, total: reader.header.rows })
  }
}

export interface ImportOptions<Tx = unknown> extends CheckOptions {
  /** Opens the file's bytes from the start; called once per read. */
  open: () => ExportInput
  store: ReplicaStore<Tx>
  /**
   * The consumer's projection hook: at the swap it sees the difference between the replica's old
   * copy (none, unless forced) and the file's rows as changes, in the swap's transaction.
   */
  apply?: ApplyHook<Tx>
  /**
   * The source the replica will catch up from, as `replicate` names it (a feed server's URL): the
   * replica is bound to it, so that catching up continues this copy instead of starting over.
   */
  source: string
  /** The replica's name in the store (default: the file's feed). */
  name?: string
  /** Replace a replica that already holds a copy (atomically: readers see the old copy or the new). */
  force?: boolean
  /** The result of checkExport on the same file, when the caller already ran it. */
  checked?: CheckedExport
  leaseMs?: number
}

export interface ImportResult {
  header: ExportHeader
  state: ReplicaState
  signature: ReadResult['signature']
}

export async function importExport<Tx>(options: ImportOptions<Tx>): Promise<ImportResult> {
  const { store, source, signal } = options
  const checked = options.checked ?? (await checkExport(options.open(), options))
  const { header } = checked
  const name = options.name ?? header.feed
  await refuseToReplace(store, name, header, source, options.force ?? false)

  await store.claim(name, header.feed, source, options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs })
  const leaseMs = options.leaseMs ?? 15_000
  const lost = new AbortController()
  const renew = setInterval(() => store.renew(name).catch((error: unknown) => lost.abort(error)), Math.max(50, Math.floor(leaseMs / 3)))
  renew.unref()
  let started = false
  try {
    await store.beginBootstrap(name, header.epoch, header.position)
    started = true
    const reader = await openExport(options.open(), readOptions(options))
    same(reader.header, header)
    let rows = 0
    let last: string | null = null
    let result: ReadResult
    for (;;) {
      if (lost.signal.aborted) throw lost.signal.reason
      const r = await reader.rows.next()
      if (r.done) {
        result = r.value
        break
      }
      last = r.value[r.value.length - 1]?.key ?? last
      await store.writeSnapshotChunk(name, r.value, { afterKey: last, readHead: header.position, done: false })
      rows += r.value.length
      options.onProgress?.({ phase: 'writing', rows, total: header.rows })
    }
    if (result.trailer.sha256 !== checked.trailer.sha256) {
      throw new ExportFileError('damaged', 'the file changed while it was imported (its checksum is not the one checked first): import it again')
    }
    // Checked whole: only now is the copy complete, and only the swap makes it visible.
    await store.writeSnapshotChunk(name, [], { afterKey: last, readHead: header.position, done: true })
    const state = await store.finishBootstrap(name, options.apply)
    void store.collectGarbage(name).catch(() => {})
    return { header, state, signature: result.signature }
  } catch (error) {
    if (started) await store.cancelBootstrap(name).catch(() => {})
    signal?.throwIfAborted()
    throw error
  } finally {
    clearInterval(renew)
    await store.release(name).catch(() => {})
  }
}

/** A replica bound elsewhere is never taken over; one that holds a copy is replaced only when forced. */
async function refuseToReplace<Tx>(store: ReplicaStore<Tx>, name: string, header: ExportHeader, source: string, force: boolean): Promise<void> {
  const existing = await store.state(name)
  if (existing === null) return
  const where = `replica "${name}" in ${store.location}`
  if (existing.feed !== header.feed) {
    throw new ConflictError(`${where} copies feed "${existing.feed}", not "${header.feed}": import the file under another name (--name)`)
  }
  if (existing.source !== source) {
    throw new ConflictError(
      `${where} copies feed "${existing.feed}" from ${existing.source}, not from ${source}: ` +
        `give that source (--source ${existing.source}) if the replica will catch up from it, or import under another name (--name)`,
    )
  }
  if (existing.gen > 0 && !force) {
    throw new ConflictError(
      `${where} already holds a copy (${existing.keys} keys at seq ${existing.seq} of epoch ${existing.epoch}): ` +
        'importing would replace it; pass --force to replace it (atomically: readers see the old copy until the new one is complete)',
    )
  }
}

function readOptions(options: CheckOptions): ReadExportOptions {
  return {
    ...(options.key !== undefined ? { key: options.key } : {}),
    ...(options.feed !== undefined ? { feed: options.feed } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  }
}

function same(a: ExportHeader, b: ExportHeader): void {
  const fields = ['feed', 'epoch', 'position', 'rows', 'createdAt', 'source', 'compression', 'signature'] as const
  for (const f of fields) {
    if (a[f] !== b[f]) throw new ExportFileError('damaged', `the file changed while it was imported (its header's ${f} is not the one checked first): import it again`)
  }
}
