import { hash } from 'node:crypto'
import type { Seq } from '../protocol/types.js'

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
