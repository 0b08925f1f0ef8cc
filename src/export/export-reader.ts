import { timingSafeEqual } from 'node:crypto'
import { Readable, pipeline, type Transform } from 'node:stream'
import { createBrotliDecompress, createGunzip } from 'node:zlib'
import { TidemarkError } from '../errors.js'
import type { StoredRow } from '../protocol/encoded.js'
import { compareKeys } from '../protocol/key-order.js'
import { LIMITS } from '../protocol/limits.js'
import { LineSplitter } from '../transport/http/line-splitter.js'
import { decodeSnapshotLine, excerpt } from '../transport/http/wire-lines.js'
import {
  EXPORT_FORMAT,
  ExportFileError,
  MAX_HEADER_BYTES,
  TRAILER_BYTES,
  decodeHeader,
  decodeTrailer,
  type Compression,
  type ExportHeader,
  type ExportTrailer,
} from './export-format.js'
import { FileDigest } from './export-writer.js'

/** An export file's bytes as they are read (a file stream, an HTTP body). */
export type ExportInput = AsyncIterable<Uint8Array>

export interface ReadExportOptions {
  /** The shared key: the file must be signed with it (an unsigned file is refused). */
  key?: Uint8Array
  /** Refuse a file of any other feed. */
  feed?: string
  /** Rows per yielded batch (default 5000). */
  batchRows?: number
  signal?: AbortSignal
}

/** How the signature came out: checked with the key, absent (no key asked for one), or present but not checked (no key). */
export type SignatureCheck = 'verified' | 'unsigned' | 'not-verified'

export interface ReadResult {
  trailer: ExportTrailer
  signature: SignatureCheck
}

export interface ExportReader {
  header: ExportHeader
  /**
   * The rows in key order, in batches. Ends with the verified trailer once the whole file has been
   * checked; throws ExportFileError when anything is wrong, possibly after rows were yielded (so a
   * consumer keeps them invisible until it ends well).
   */
  rows: AsyncGenerator<StoredRow[], ReadResult, undefined>
}

/** A row line is its key, its seq and its data (at most LIMITS.dataBytes), escaped: far below this. */
const MAX_LINE_BYTES = 4 * LIMITS.dataBytes

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1')

/** "Not an export", naming the likely mistake: a SQLite database (a source or a replica) given for an export file. */
function notAnExport(start: Buffer, why: string): ExportFileError {
  if (start.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
    return new ExportFileError('not-an-export', 'not a tidemark export file: it is a SQLite database (a source or a replica?); `tidemark export` makes an export file from one')
  }
  return new ExportFileError('not-an-export', `not a tidemark export file: ${why}`)
}

/** Reads and checks the header (and whether a signature is demanded but absent) before returning. */
export async function openExport(input: ExportInput, options: ReadExportOptions = {}): Promise<ExportReader> {
  const it = input[Symbol.asyncIterator]()
  let buf = Buffer.alloc(0)
  let nl = -1
  while ((nl = buf.indexOf(0x0a)) < 0) {
    if (buf.length > MAX_HEADER_BYTES) throw notAnExport(buf, `its first ${MAX_HEADER_BYTES} bytes hold no header line`)
    const r = await it.next()
    if (r.done) {
      if (buf.length === 0) throw new ExportFileError('truncated', 'the file is empty: it is cut short, or not a tidemark export')
      if (!looksLikeHeader(buf)) throw notAnExport(buf, 'it does not start with a tidemark export header')
      throw new ExportFileError('truncated', `the file ends inside its header, after ${buf.length} bytes: it is cut short`)
    }
    buf = Buffer.concat([buf, r.value])
  }
  const headerBytes = buf.subarray(0, nl + 1)
  if (!looksLikeHeader(headerBytes)) throw notAnExport(buf, 'it does not start with a tidemark export header')
  const header = decodeHeader(headerBytes.toString('utf8'))
  if (options.feed !== undefined && header.feed !== options.feed) {
    throw new ExportFileError('feed', `the file holds feed "${header.feed}", not "${options.feed}": import the right file, or leave out the feed you expect`)
  }
  if (options.key !== undefined && header.signature === null) {
    throw new ExportFileError('unsigned', 'the file is not signed, and a signature is demanded (a key was given): refusing it; export it again with the key, or import it without one if you trust how it came')
  }
  const rest = buf.subarray(nl + 1)
  return { header, rows: readRows(header, headerBytes, rest, it, options) }
}

function looksLikeHeader(bytes: Buffer): boolean {
  const prefix = Buffer.from(`{"format":"${EXPORT_FORMAT}"`)
  const n = Math.min(prefix.length, bytes.length)
  return bytes.subarray(0, n).equals(prefix.subarray(0, n))
}

async function* readRows(
  header: ExportHeader,
  headerBytes: Buffer,
  rest: Buffer,
  it: AsyncIterator<Uint8Array>,
  options: ReadExportOptions,
): AsyncGenerator<StoredRow[], ReadResult, undefined> {
  const key = header.signature === null ? undefined : options.key
  const digest = new FileDigest(key)
  digest.update(headerBytes)
  // The last TRAILER_BYTES seen are held back: they are the trailer if the file ends there.
  let tail: Buffer = Buffer.from(rest)
  const pass = (chunk: Uint8Array): Buffer | undefined => {
    tail = tail.length === 0 ? Buffer.from(chunk) : Buffer.concat([tail, chunk])
    if (tail.length <= TRAILER_BYTES) return undefined
    const out = tail.subarray(0, tail.length - TRAILER_BYTES)
    tail = Buffer.from(tail.subarray(tail.length - TRAILER_BYTES))
    digest.update(out)
    return out
  }
  async function* compressed(): AsyncGenerator<Buffer> {
    const first = pass(Buffer.alloc(0))
    if (first) yield first
    for (;;) {
      options.signal?.throwIfAborted()
      const r = await it.next()
      if (r.done) return
      const out = pass(r.value)
      if (out) yield out
    }
  }

  const batchRows = options.batchRows ?? 5000
  const splitter = new LineSplitter(MAX_LINE_BYTES)
  let batch: StoredRow[] = []
  let count = 0
  let previous: string | undefined
  const onLine = (line: string): void => {
    const row = decodeRow(line, count + 1)
    if (row.seq > header.position) damaged(`row ${count + 1} (key ${JSON.stringify(row.key)}) has seq ${row.seq}, above the file's position ${header.position}`)
    if (previous !== undefined && compareKeys(previous, row.key) >= 0) damaged(`row ${count + 1} (key ${JSON.stringify(row.key)}) is not after key ${JSON.stringify(previous)}: rows must be in key order`)
    previous = row.key
    count++
    batch.push(row)
  }

  const body = Readable.from(compressed(), { objectMode: false })
  const decompressor = createDecompressor(header.compression)
  pipeline(body, decompressor, () => {})
  try {
    for await (const chunk of decompressor as AsyncIterable<Buffer>) {
      splitter.push(chunk, onLine)
      if (batch.length >= batchRows) {
        const out = batch
        batch = []
        yield out
      }
    }
  } catch (error) {
    options.signal?.throwIfAborted()
    throw classify(error, header.compression)
  } finally {
    body.destroy()
    decompressor.destroy()
  }
  if (splitter.partialBytes > 0) damaged('the rows end in the middle of a line')
  if (batch.length > 0) yield batch

  const trailer = decodeTrailer(tail)
  if (trailer === undefined) {
    throw new ExportFileError('truncated', `the file does not end with a valid ${TRAILER_BYTES}-byte trailer: it is cut short, or its end is damaged`)
  }
  const sums = digest.digest()
  if (sums.sha256 !== trailer.sha256) {
    throw new ExportFileError('damaged', 'the file is damaged: its SHA-256 does not match the one in its trailer (a changed byte, or a copy that went wrong)')
  }
  if (trailer.rows !== count || header.rows !== count) {
    damaged(`it holds ${count} rows, but its header says ${header.rows} and its trailer ${trailer.rows}`)
  }
  if ((trailer.hmac === null) !== (header.signature === null)) damaged(`its header says ${header.signature === null ? 'unsigned' : 'signed'}, its trailer does not`)
  let signature: SignatureCheck = header.signature === null ? 'unsigned' : 'not-verified'
  if (key !== undefined) {
    const expected = Buffer.from(sums.hmac as string, 'hex')
    if (!timingSafeEqual(expected, Buffer.from(trailer.hmac as string, 'hex'))) {
      throw new ExportFileError('signature', 'the signature does not match: the file was altered after it was signed, or signed with another key')
    }
    signature = 'verified'
  }
  return { trailer, signature }
}

function createDecompressor(compression: Compression): Transform {
  return compression === 'gzip' ? createGunzip() : createBrotliDecompress()
}

function decodeRow(line: string, n: number): StoredRow {
  let decoded: ReturnType<typeof decodeSnapshotLine>
  try {
    decoded = decodeSnapshotLine(line)
  } catch (error) {
    return damaged(`row ${n} is not a state row (${(error as Error).message})`)
  }
  if (decoded.kind !== 'item') return damaged(`row ${n} is not a state row: ${excerpt(line)}`)
  if (decoded.item.deleted) return damaged(`row ${n} (key ${JSON.stringify(decoded.item.key)}) is a tombstone; an export holds live rows only`)
  return decoded.item
}

function damaged(what: string): never {
  throw new ExportFileError('damaged', `the file is damaged: ${what}`)
}

/** A decompressor that runs out of input mid-stream means the file was cut; anything else, damaged. */
function classify(error: unknown, compression: Compression): Error {
  if (error instanceof ExportFileError) return error
  // The line splitter's own complaint (a line not UTF-8, or far too long), in the file's words.
  if (error instanceof TidemarkError) return new ExportFileError('damaged', `the file is damaged: ${error.message.replace('of the response', 'of the rows')}`, { cause: error })
  const e = error as { code?: string; message?: string }
  if (e.code === 'Z_BUF_ERROR' || /unexpected end/i.test(e.message ?? '')) {
    return new ExportFileError('truncated', 'the file is cut short: its compressed rows stop before their end', { cause: error })
  }
  return new ExportFileError('damaged', `the file is damaged: its rows do not decompress (${compression}: ${e.message ?? String(error)})`, { cause: error })
}
