import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { RowHasher } from '../../digest/row-hash.js'
import type { StateRow } from '../../protocol/types.js'
import { rowText } from '../replica-row.js'
import type { DigestSums } from './replica-digest-sums.js'

/** PostgreSQL's binary COPY header: signature, flags, header extension length. */
const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
const FIELDS = 7
/**
 * Rows per buffer handed to the COPY stream. Small enough that the server stores the first rows
 * while this process still hashes and encodes the rest of the chunk (the two overlap on two cores).
 */
const ROWS_PER_BUFFER = 1000

/**
 * Writes snapshot rows into generation `gen` of replica `name` with one `COPY … FROM STDIN (FORMAT
 * binary)` inside the caller's transaction: no per-row SQL, no array literals to build and parse,
 * no escaping (binary fields are length-prefixed). Each row's hash and bucket are computed as it
 * is encoded and its hash added to `sums` straight from the bytes sent (the caller keeps `sums`
 * only if the transaction commits). Returns the live rows written (tombstones are not keys).
 * It has no ON CONFLICT: the caller makes sure that none of the keys is in the generation yet.
 */
export async function copyIntoGeneration(client: pg.ClientBase, name: string, gen: number, rows: StateRow[], sums?: DigestSums): Promise<number> {
  if (rows.length === 0) return 0
  const written = { keys: 0 }
  const stream = client.query(copyFrom('COPY tidemark.replica_rows (name, gen, key, seq, data, hash, bucket) FROM STDIN (FORMAT binary)'))
  await pipeline(Readable.from(encode(name, gen, rows, sums, written)), stream)
  return written.keys
}

function* encode(name: string, gen: number, rows: StateRow[], sums: DigestSums | undefined, written: { keys: number }): Generator<Buffer> {
  const nameBytes = Buffer.from(name)
  const hasher = new RowHasher()
  // field count; name, gen, key, seq, data, hash, bucket: each a 4-byte length and its bytes
  const fixed = 2 + 4 * FIELDS + nameBytes.length + 4 + 8 + 16 + 4
  for (let start = 0; start < rows.length; start += ROWS_PER_BUFFER) {
    const end = Math.min(rows.length, start + ROWS_PER_BUFFER)
    const first = start === 0
    const last = end === rows.length
    const texts: Array<string | null> = []
    // UTF-8 takes at most 3 bytes per UTF-16 unit: room enough without measuring each string first.
    let size = (first ? HEADER.length : 0) + (last ? 2 : 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as StateRow
      const text = rowText(r)
      texts.push(text)
      size += fixed + 3 * (r.key.length + (text === null ? 0 : text.length))
    }
    const b = Buffer.allocUnsafe(size)
    let o = 0
    if (first) o += HEADER.copy(b, 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as StateRow
      const text = texts[i - start] as string | null
      o = b.writeInt16BE(FIELDS, o)
      o = b.writeInt32BE(nameBytes.length, o)
      o += nameBytes.copy(b, o)
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(gen, o)
      const keyAt = o + 4
      o = writeText(b, o, r.key)
      const keyLength = o - keyAt
      o = b.writeInt32BE(8, o)
      // A seq is a safe integer: two 32-bit halves, without a BigInt per row.
      o = b.writeUInt32BE(Math.floor(r.seq / 2 ** 32), o)
      o = b.writeUInt32BE(r.seq >>> 0, o)
      // Hash and bucket from the bytes just written (RowHasher), the hash straight into its field.
      const bucket = hasher.bucket(b, keyAt, keyLength)
      if (text === null) {
        o = b.writeInt32BE(-1, o)
        o = b.writeInt32BE(-1, o)
      } else {
        const dataAt = o + 4
        o = writeText(b, o, text)
        o = b.writeInt32BE(16, o)
        hasher.hashInto(b, keyAt, keyLength, r.seq, dataAt, o - 4 - dataAt, b, o)
        sums?.add(bucket, b, o)
        written.keys++
        o += 16
      }
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(bucket, o)
    }
    if (last) o = b.writeInt16BE(-1, o)
    yield b.subarray(0, o)
  }
}

/** A text field: its UTF-8 bytes after their length. */
function writeText(b: Buffer, o: number, s: string): number {
  const n = b.write(s, o + 4)
  b.writeInt32BE(n, o)
  return o + 4 + n
}
