import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'

/** One row of a replica generation as tidemark.replica_rows stores it. */
export interface GenRow {
  key: string
  seq: number
  /** null: a tombstone (kept while bootstrapping). */
  data: string | null
  /** The row hash as 32 hex digits (null with a tombstone). */
  hash: string | null
  bucket: number
}

/** PostgreSQL's binary COPY header: signature, flags, header extension length. */
const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
const FIELDS = 7
/** Rows per buffer handed to the COPY stream (about 1 MB for rows of ~100 bytes). */
const ROWS_PER_BUFFER = 10_000

/**
 * Writes rows into generation `gen` of replica `name` with one `COPY … FROM STDIN (FORMAT binary)`
 * inside the caller's transaction: no per-row SQL, no array literals to build and parse, no
 * escaping (binary fields are length-prefixed). It has no ON CONFLICT: the caller makes sure that
 * none of the keys is in the generation yet.
 */
export async function copyIntoGeneration(client: pg.ClientBase, name: string, gen: number, rows: GenRow[]): Promise<void> {
  if (rows.length === 0) return
  const stream = client.query(copyFrom('COPY tidemark.replica_rows (name, gen, key, seq, data, hash, bucket) FROM STDIN (FORMAT binary)'))
  await pipeline(Readable.from(encode(name, gen, rows)), stream)
}

function* encode(name: string, gen: number, rows: GenRow[]): Generator<Buffer> {
  const nameBytes = Buffer.from(name)
  for (let start = 0; start < rows.length; start += ROWS_PER_BUFFER) {
    const end = Math.min(rows.length, start + ROWS_PER_BUFFER)
    const first = start === 0
    const last = end === rows.length
    const keyLengths: number[] = []
    const dataLengths: number[] = []
    let size = (first ? HEADER.length : 0) + (last ? 2 : 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as GenRow
      const k = Buffer.byteLength(r.key)
      const d = r.data === null ? 0 : Buffer.byteLength(r.data)
      keyLengths.push(k)
      dataLengths.push(d)
      // field count; name, gen, key, seq, data, hash, bucket: each a 4-byte length and its bytes
      size += 2 + 4 * FIELDS + nameBytes.length + 4 + k + 8 + d + (r.hash === null ? 0 : 16) + 4
    }
    const b = Buffer.allocUnsafe(size)
    let o = 0
    if (first) o += HEADER.copy(b, 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as GenRow
      const k = keyLengths[i - start] as number
      const d = dataLengths[i - start] as number
      o = b.writeInt16BE(FIELDS, o)
      o = b.writeInt32BE(nameBytes.length, o)
      o += nameBytes.copy(b, o)
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(gen, o)
      o = b.writeInt32BE(k, o)
      o += b.write(r.key, o, k, 'utf8')
      o = b.writeInt32BE(8, o)
      // A seq is a safe integer: two 32-bit halves, without a BigInt per row.
      o = b.writeUInt32BE(Math.floor(r.seq / 2 ** 32), o)
      o = b.writeUInt32BE(r.seq >>> 0, o)
      if (r.data === null) o = b.writeInt32BE(-1, o)
      else {
        o = b.writeInt32BE(d, o)
        o += b.write(r.data, o, d, 'utf8')
      }
      if (r.hash === null) o = b.writeInt32BE(-1, o)
      else {
        o = b.writeInt32BE(16, o)
        o += b.write(r.hash, o, 16, 'hex')
      }
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(r.bucket, o)
    }
    if (last) o = b.writeInt16BE(-1, o)
    yield o === size ? b : b.subarray(0, o)
  }
}
