/**
 * The export file, version 1 (docs/export-format.md is the reference):
 *
 *   <header: one line of JSON>\n
 *   <the state rows as NDJSON, in key order, compressed as one brotli (or gzip) stream>
 *   <trailer: one line of JSON, padded with spaces to exactly TRAILER_BYTES bytes, \n last>
 *
 * The trailer's SHA-256 (and HMAC-SHA-256 when signed) cover every byte of the file before it, the
 * header included, so any flipped byte anywhere is noticed. The trailer has a fixed size so that a
 * reader streaming the file knows where the compressed rows end without buffering them.
 */
import { TidemarkError } from '../errors.js'
import type { Seq } from '../protocol/types.js'

export const EXPORT_FORMAT = 'tidemark-export'
export const EXPORT_VERSION = 1
/** The trailer's exact size, newline included. */
export const TRAILER_BYTES = 256
/** A header is a few hundred bytes; a first line longer than this is not one. */
export const MAX_HEADER_BYTES = 64 * 1024
/** Media type of an export on HTTP. */
export const EXPORT_MEDIA_TYPE = 'application/vnd.tidemark.export'

/** `gzip` by default: measured against brotli in docs/export-format.md ("Compression"). */
export type Compression = 'gzip' | 'br'
export const COMPRESSIONS: readonly Compression[] = ['gzip', 'br']
export const DEFAULT_COMPRESSION: Compression = 'gzip'

export interface ExportHeader {
  format: typeof EXPORT_FORMAT
  version: typeof EXPORT_VERSION
  feed: string
  epoch: string
  /** The seq the rows are exact at: a replica imported from the file has this checkpoint. */
  position: Seq
  rows: number
  /** ISO 8601, UTC. */
  createdAt: string
  /** Where the rows came from (a feed server's URL or `local:<file>`), never with credentials. */
  source: string
  compression: Compression
  checksum: 'sha256'
  signature: 'hmac-sha256' | null
}

export interface ExportTrailer {
  end: true
  rows: number
  /** Hex SHA-256 of every byte before the trailer. */
  sha256: string
  /** Hex HMAC-SHA-256 of the same bytes under the shared key; null when unsigned. */
  hmac: string | null
}

/** Why a file was refused: a stable word for scripts and tests, beside the message. */
export type ExportFileProblem =
  | 'not-an-export'
  | 'truncated'
  | 'damaged'
  | 'version'
  | 'unsigned'
  | 'signature'
  | 'feed'

/** An export file that cannot be used as it is. Bad input: exit code 1, like any bad request. */
export class ExportFileError extends TidemarkError {
  constructor(
    readonly problem: ExportFileProblem,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super('bad-request', message, { ...options, details: { problem } })
    this.name = 'ExportFileError'
  }
}

export function encodeHeader(header: ExportHeader): Buffer {
  // Fields in a fixed order, so that the same export always starts with the same bytes.
  const h: ExportHeader = {
    format: header.format,
    version: header.version,
    feed: header.feed,
    epoch: header.epoch,
    position: header.position,
    rows: header.rows,
    createdAt: header.createdAt,
    source: header.source,
    compression: header.compression,
    checksum: header.checksum,
    signature: header.signature,
  }
  return Buffer.from(`${JSON.stringify(h)}\n`)
}

/** Checks a first line's JSON; throws ExportFileError saying what is wrong with it. */
export function decodeHeader(line: string): ExportHeader {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch (error) {
    throw new ExportFileError('not-an-export', 'not a tidemark export file: its first line is not a JSON header', { cause: error })
  }
  const h = value as Partial<Record<keyof ExportHeader, unknown>> | null
  if (typeof h !== 'object' || h === null || h.format !== EXPORT_FORMAT) {
    throw new ExportFileError('not-an-export', `not a tidemark export file: its header does not say "format":"${EXPORT_FORMAT}"`)
  }
  if (h.version !== EXPORT_VERSION) {
    throw new ExportFileError(
      'version',
      `the file is a tidemark export of format version ${JSON.stringify(h.version)}; this tidemark reads version ${EXPORT_VERSION}: ` +
        (typeof h.version === 'number' && h.version > EXPORT_VERSION ? 'upgrade tidemark to import it' : 'export it again with this tidemark'),
    )
  }
  const bad = (field: string): never => {
    throw new ExportFileError('damaged', `the export header's ${field} is missing or invalid: the file is damaged`)
  }
  if (typeof h.feed !== 'string' || h.feed === '') bad('feed')
  if (typeof h.epoch !== 'string' || h.epoch === '') bad('epoch')
  if (!isCount(h.position)) bad('position')
  if (!isCount(h.rows)) bad('rows')
  if (typeof h.createdAt !== 'string') bad('createdAt')
  if (typeof h.source !== 'string') bad('source')
  if (!COMPRESSIONS.includes(h.compression as Compression)) bad('compression')
  if (h.checksum !== 'sha256') bad('checksum')
  if (h.signature !== null && h.signature !== 'hmac-sha256') bad('signature')
  return h as ExportHeader
}

export function encodeTrailer(trailer: ExportTrailer): Buffer {
  const text = JSON.stringify({ end: true, rows: trailer.rows, sha256: trailer.sha256, hmac: trailer.hmac })
  // 1e15 rows with a 64-digit hmac still fits: the line is well under 256 bytes.
  return Buffer.from(`${text.padEnd(TRAILER_BYTES - 1, ' ')}\n`)
}

/** The trailer, when `bytes` (the file's last TRAILER_BYTES) is exactly one as encodeTrailer writes it. */
export function decodeTrailer(bytes: Buffer): ExportTrailer | undefined {
  if (bytes.length !== TRAILER_BYTES || bytes[TRAILER_BYTES - 1] !== 0x0a) return undefined
  let value: Partial<Record<keyof ExportTrailer, unknown>>
  try {
    value = JSON.parse(bytes.toString('utf8')) as typeof value
  } catch {
    return undefined
  }
  const hex = /^[0-9a-f]{64}$/
  if (value === null || typeof value !== 'object' || value.end !== true || !isCount(value.rows)) return undefined
  if (typeof value.sha256 !== 'string' || !hex.test(value.sha256)) return undefined
  if (value.hmac !== null && (typeof value.hmac !== 'string' || !hex.test(value.hmac))) return undefined
  const trailer: ExportTrailer = { end: true, rows: value.rows, sha256: value.sha256, hmac: value.hmac }
  // Byte for byte as written (padding included): a flipped space is a damaged trailer, not a valid one.
  return encodeTrailer(trailer).equals(bytes) ? trailer : undefined
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}
