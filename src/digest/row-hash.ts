import { hash } from 'node:crypto'
import type { Seq } from '../protocol/types.js'
import { MD5_PADDING, md5Into } from './md5.js'

/**
 * The digest's hashes. MD5 is used as a fast, well-spread 128-bit checksum, not for security: the
 * digest detects accidental drift; an attacker who can write the replica's database can rewrite
 * its digest too. `npm run bench` measures it against SHA-1/SHA-256 (docs/protocol.md, "Digest").
 */
export const ROW_HASH = 'md5' as const

/** Leaf buckets are the leading `DIGEST_BITS` bits of the key's hash: 2^16 = 65,536 leaves. */
export const DIGEST_BITS = 16

const MASK_128 = (1n << 128n) - 1n

/**
 * H(key, seq, data) as an unsigned 128-bit integer, over `data`'s JSON text exactly as the source
 * stored it. Replicas keep that text byte for byte (the wire carries it unchanged), so neither side
 * parses or re-serializes a row to hash it.
 */
export function rowHash(key: string, seq: Seq, dataText: string): bigint {
  return BigInt(`0x${rowHashHex(key, seq, dataText)}`)
}

/** H(key, seq, data) as 32 hex digits (what a bulk writer stores as 16 bytes without a Buffer per row). */
export function rowHashHex(key: string, seq: Seq, dataText: string): string {
  return hash(ROW_HASH, `${key}\u0000${seq}\u0000${dataText}`, 'hex')
}

/** The leaf bucket of a key: its hash's leading DIGEST_BITS bits. */
export function bucketOf(key: string): number {
  return Number.parseInt(hash(ROW_HASH, key, 'hex').slice(0, DIGEST_BITS / 4), 16)
}

/**
 * rowHash and bucketOf computed from UTF-8 bytes already in a buffer (a bulk writer's output, where
 * the key and data were just encoded): the same values, with MD5 in JavaScript over one reused
 * buffer instead of a string built, copied and hashed natively per row (md5.ts says why).
 */
export class RowHasher {
  private m = new Uint8Array(1024)
  private readonly digest = new Uint8Array(16)
  private readonly digits = new Uint8Array(24)

  /** Writes H(key, seq, data) to `out[at … at + 16)`; the key's bytes are `src[keyAt … keyAt + keyLength)`, the data's likewise. */
  hashInto(src: Uint8Array, keyAt: number, keyLength: number, seq: Seq, dataAt: number, dataLength: number, out: Uint8Array, at: number): void {
    const m = this.room(keyLength + dataLength + this.digits.length + 2)
    let o = copy(src, keyAt, keyLength, m, 0)
    m[o++] = 0
    // The seq's decimal digits, as `${seq}` writes them.
    const digits = this.digits
    let v = seq
    let d = 0
    do {
      digits[d++] = 48 + (v % 10)
      v = Math.floor(v / 10)
    } while (v > 0)
    while (d > 0) m[o++] = digits[--d]!
    m[o++] = 0
    o = copy(src, dataAt, dataLength, m, o)
    md5Into(m, o, out, at)
  }

  /** The leaf bucket of the key whose bytes are `src[keyAt … keyAt + keyLength)`. */
  bucket(src: Uint8Array, keyAt: number, keyLength: number): number {
    const m = this.room(keyLength)
    copy(src, keyAt, keyLength, m, 0)
    md5Into(m, keyLength, this.digest, 0)
    return (((this.digest[0] as number) << 8) | (this.digest[1] as number)) >>> (16 - DIGEST_BITS)
  }

  private room(length: number): Uint8Array {
    if (this.m.length < length + MD5_PADDING) this.m = new Uint8Array(2 * (length + MD5_PADDING))
    return this.m
  }
}

/** Copies `length` bytes; a plain loop for short runs (most keys and rows), where a native call costs more. */
function copy(src: Uint8Array, from: number, length: number, to: Uint8Array, at: number): number {
  if (length > 256) to.set(src.subarray(from, from + length), at)
  else for (let i = 0; i < length; i++) to[at + i] = src[from + i]!
  return at + length
}

export function addHash(sum: bigint, h: bigint): bigint {
  return (sum + h) & MASK_128
}

export function subHash(sum: bigint, h: bigint): bigint {
  return (sum - h + (1n << 128n)) & MASK_128
}

/** 16 bytes, big-endian: how sums and hashes are stored and sent. */
export function hashToBuffer(h: bigint): Buffer {
  const buf = Buffer.alloc(16)
  buf.writeBigUInt64BE(h >> 64n, 0)
  buf.writeBigUInt64BE(h & 0xffff_ffff_ffff_ffffn, 8)
  return buf
}

export function bufferToHash(buf: Uint8Array): bigint {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  if (b.length !== 16) throw new RangeError(`a digest hash has 16 bytes, not ${b.length}`)
  return (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8)
}

export function hashToHex(h: bigint): string {
  return h.toString(16).padStart(32, '0')
}
