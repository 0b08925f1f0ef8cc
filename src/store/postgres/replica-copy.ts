import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { RowHasher } from '../../digest/row-hash.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { StateRow } from '../../protocol/types.js'
import { rowText } from '../replica-row.js'
import type { DigestSums } from './replica-digest-sums.js'

/** PostgreSQL's binary COPY header: signature, flags, header extension length. */
export const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
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
  await sendCopy(client, 'COPY tidemark.replica_rows (name, gen, key, seq, data, hash, bucket) FROM STDIN (FORMAT binary)', encode(name, gen, rows, sums, written))
  return written.keys
}

/**
 * Runs `COPY … FROM STDIN (FORMAT binary)` with the data `buffers` yields (header and trailer
 * included), pulling one buffer ahead at most: the COPY stream holds what it is given until the
 * server has answered the command, and with a readable's default of 16 every buffer encoded
 * meanwhile would reach the server at once, after all of them were built, instead of one by one.
 */
export async function sendCopy(client: pg.ClientBase, sql: string, buffers: Iterable<Buffer>): Promise<void> {
  await pipeline(Readable.from(buffers, { highWaterMark: 1 }), client.query(copyFrom(sql)))
}

function* encode(name: string, gen: number, rows: StateRow[], sums: DigestSums | undefined, written: { keys: number }): Generator<Buffer> {
  // What every row starts with: the field count, the name and the generation.
  const nameBytes = Buffer.from(name)
  const prefix = Buffer.alloc(2 + 4 + nameBytes.length + 4 + 4)
  prefix.writeInt16BE(FIELDS, 0)
  prefix.writeInt32BE(nameBytes.length, 2)
  nameBytes.copy(prefix, 6)
  prefix.writeInt32BE(4, 6 + nameBytes.length)
  prefix.writeInt32BE(gen, 10 + nameBytes.length)
  const hasher = new RowHasher()
  // then key, seq, data, hash, bucket: each a 4-byte length and its bytes
  const fixed = prefix.length + 4 * 5 + 8 + 16 + 4
  for (let start = 0; start < rows.length; start += ROWS_PER_BUFFER) {
    const end = Math.min(rows.length, start + ROWS_PER_BUFFER)
    const first = start === 0
    const last = end === rows.length
    const texts: Array<string | null> = []
    // UTF-8 takes at most 3 bytes per UTF-16 unit: room enough without measuring each string first.
    let size = (first ? COPY_HEADER.length : 0) + (last ? 2 : 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as StateRow
      const text = rowText(r)
      texts.push(text)
      size += fixed + 3 * (r.key.length + (text === null ? 0 : text.length))
    }
    const b = Buffer.allocUnsafe(size)
    let o = 0
    if (first) o += COPY_HEADER.copy(b, 0)
    for (let i = start; i < end; i++) {
      const r = rows[i] as StateRow
      const text = texts[i - start] as string | null
      for (let j = 0; j < prefix.length; j++) b[o + j] = prefix[j] as number
      o += prefix.length
      const keyAt = o + 4
      o = writeText(b, o, r.key)
      const keyLength = o - keyAt
      o = int32(b, o, 8)
      // A seq is a safe integer: two 32-bit halves, without a BigInt per row.
      o = int32(b, o, Math.floor(r.seq / 2 ** 32))
      o = int32(b, o, r.seq >>> 0)
      // Hash and bucket from the bytes just written (RowHasher), the hash straight into its field.
      const bucket = hasher.bucket(b, keyAt, keyLength)
      if (text === null) {
        o = int32(b, o, -1)
        o = int32(b, o, -1)
      } else {
        const dataAt = o + 4
        o = writeText(b, o, text)
        o = int32(b, o, 16)
        hasher.hashInto(b, keyAt, keyLength, r.seq, dataAt, o - 4 - dataAt, b, o)
        sums?.add(bucket, b, o)
        written.keys++
        o += 16
      }
      o = int32(b, o, 4)
      o = int32(b, o, bucket)
    }
    if (last) o = b.writeInt16BE(-1, o)
    yield b.subarray(0, o)
  }
}

/** A 32-bit integer, big-endian (what Buffer#writeInt32BE does, without its checks: the room is reserved). */
function int32(b: Buffer, o: number, v: number): number {
  b[o] = v >>> 24
  b[o + 1] = v >>> 16
  b[o + 2] = v >>> 8
  b[o + 3] = v
  return o + 4
}

/** A text field: its UTF-8 bytes after their length. */
function writeText(b: Buffer, o: number, s: string): number {
  const n = b.write(s, o + 4)
  int32(b, o, n)
  return o + 4 + n
}

/**
 * Whether snapshot rows can go in with a COPY, which cannot meet a key the generation holds: keys
 * strictly ascending and none in the generation between the first and the last.
 */
export async function copyable(client: pg.ClientBase, name: string, gen: number, rows: StateRow[]): Promise<boolean> {
  if (rows.length === 0) return true
  for (let i = 1; i < rows.length; i++) if (compareKeys((rows[i - 1] as StateRow).key, (rows[i] as StateRow).key) >= 0) return false
  const { rows: held } = await client.query<{ any: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM tidemark.replica_rows WHERE name = $1 AND gen = $2 AND key >= $3 AND key <= $4) AS any`,
    [name, gen, (rows[0] as StateRow).key, (rows[rows.length - 1] as StateRow).key],
  )
  return held[0]?.any !== true
}
