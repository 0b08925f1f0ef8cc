import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto'
import { Readable, pipeline, type Transform } from 'node:stream'
import { constants, createBrotliCompress, createGzip } from 'node:zlib'
import { BadRequestError, TidemarkError } from '../errors.js'
import { encodeRow } from '../protocol/encoded.js'
import type { StateRow } from '../protocol/types.js'
import { encodeHeader, encodeTrailer, type Compression, type ExportHeader } from './export-format.js'

/** Row lines are handed to the compressor in pieces of about this many characters. */
const PIECE_CHARS = 64 * 1024

/** The levels docs/export-format.md measured: gzip 6 (the default) and brotli 4. */
export function createCompressor(compression: Compression): Transform {
  if (compression === 'gzip') return createGzip({ level: 6 })
  return createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT } })
}

/** A shared key as bytes: text keys are their UTF-8 bytes. */
export function keyBytes(key: string | Uint8Array): Uint8Array {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  if (bytes.length === 0) throw new BadRequestError('a signing key must not be empty')
  return bytes
}

/** Hashes every byte of the file that goes before the trailer. */
export class FileDigest {
  private readonly sha = createHash('sha256')
  private readonly mac: Hmac | undefined
  bytes = 0

  constructor(key: Uint8Array | undefined) {
    this.mac = key === undefined ? undefined : createHmac('sha256', key)
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.length
    ;(this.sha as Hash).update(chunk)
    this.mac?.update(chunk)
  }

  digest(): { sha256: string; hmac: string | null } {
    return { sha256: this.sha.digest('hex'), hmac: this.mac?.digest('hex') ?? null }
  }
}

/**
 * The bytes of an export file: header, `rows` (in key order, as the caller reads them) compressed,
 * trailer. Memory holds one piece of rows and the compressor's window, whatever the size; the
 * compressor is pulled only as fast as the consumer takes bytes. `header.signature` must say
 * whether a key is given. Throws when the rows do not number `header.rows`.
 */
export async function* writeExport(
  header: ExportHeader,
  rows: AsyncIterable<readonly StateRow[]>,
  options: { key?: Uint8Array } = {},
): AsyncGenerator<Buffer, void, undefined> {
  if ((header.signature !== null) !== (options.key !== undefined)) {
    throw new BadRequestError(`the header says signature ${String(header.signature)}, but a key is ${options.key ? '' : 'not '}given`)
  }
  const digest = new FileDigest(options.key)
  const head = encodeHeader(header)
  digest.update(head)
  yield head

  let count = 0
  async function* lines(): AsyncGenerator<string> {
    let piece = ''
    for await (const batch of rows) {
      for (const row of batch) {
        piece += `${encodeRow(row)}\n`
        count++
        if (piece.length >= PIECE_CHARS) {
          yield piece
          piece = ''
        }
      }
    }
    if (piece !== '') yield piece
  }
  const text = Readable.from(lines(), { objectMode: false })
  const compressor = createCompressor(header.compression)
  // pipeline() carries a failure of the rows into the compressor, whose iteration then throws it.
  pipeline(text, compressor, () => {})
  try {
    for await (const chunk of compressor as AsyncIterable<Buffer>) {
      digest.update(chunk)
      yield chunk
    }
  } finally {
    // The consumer stopped early (a client that went away): stop reading rows too.
    text.destroy()
    compressor.destroy()
  }
  if (count !== header.rows) {
    throw new TidemarkError('internal', `the export header promised ${header.rows} rows, but ${count} were written`)
  }
  yield encodeTrailer({ end: true, rows: count, ...digest.digest() })
}
