/**
 * The `digest` and `keys` answers on the wire (docs/protocol.md, "Digest" endpoints), and the
 * bounds of their requests, shared by the feed server, the local source and the HTTP client.
 * Sums and hashes travel as base64url of their 16 big-endian bytes (22 characters, no padding):
 * a third shorter than hex, so that an intact replica's one `GET digest` stays far under 2 KB.
 */
import { TREE_DEPTH, isNodeRef, nodesAt, type DigestNode } from '../digest/digest-tree.js'
import { DIGEST_BITS, bufferToHash, hashToBuffer } from '../digest/row-hash.js'
import { BadRequestError } from '../errors.js'
import { LIMITS } from './limits.js'
import type { BucketList, Seq } from './types.js'

/** Leaf buckets: 0 … BUCKETS - 1. */
export const BUCKETS = 2 ** DIGEST_BITS

const HASH_TEXT = /^[A-Za-z0-9_-]{22}$/

/** A row hash: always 22 characters. */
export function encodeHash(h: bigint): string {
  return hashToBuffer(h).toString('base64url')
}

/** A node's or bucket's sum: `""` for 0 (every empty node), else as a hash. */
export function encodeSum(sum: bigint): string {
  return sum === 0n ? '' : encodeHash(sum)
}

/** The inverse of encodeHash, or undefined for anything encodeHash would not have written. */
export function decodeHash(text: unknown): bigint | undefined {
  if (typeof text !== 'string' || !HASH_TEXT.test(text)) return undefined
  const buf = Buffer.from(text, 'base64url')
  // The 22nd character carries 2 bits of padding: only one spelling of each hash is accepted.
  if (buf.length !== 16 || buf.toString('base64url') !== text) return undefined
  return bufferToHash(buf)
}

/** The inverse of encodeSum, or undefined. */
export function decodeSum(text: unknown): bigint | undefined {
  return text === '' ? 0n : decodeHash(text)
}

/** `[count,"sum"]`: one child on the wire. */
function encodeNode(node: DigestNode): string {
  return `[${node.count},"${encodeSum(node.sum)}"]`
}

export interface DigestAnswer {
  epoch: string
  seq: Seq
  head: Seq
  minSeq: Seq
  level: number
  nodes: Array<{ index: number; node: DigestNode; children: readonly DigestNode[] }>
}

/** `{"epoch":…,"seq":S,"head":H,"minSeq":M,"level":L,"nodes":[[index,count,"sum",[[c,"s"],…16]],…]}` */
export function encodeDigestAnswer(a: DigestAnswer): string {
  let body = `{"epoch":${JSON.stringify(a.epoch)},"seq":${a.seq},"head":${a.head},"minSeq":${a.minSeq},"level":${a.level},"nodes":[`
  for (let i = 0; i < a.nodes.length; i++) {
    const n = a.nodes[i]!
    body += `${i > 0 ? ',' : ''}[${n.index},${n.node.count},"${encodeSum(n.node.sum)}",[${n.children.map(encodeNode).join(',')}]]`
  }
  return `${body}]}`
}

/** The first line of a `keys` listing. */
export interface KeysHead {
  epoch: string
  /** The position the first lists were read at. */
  seq: Seq
  minSeq: Seq
}

/** The last line of a complete `keys` listing. A body without it was cut. */
export interface KeysEnd {
  end: true
  /** The feed's epoch when the listing ended. */
  epoch: string
  /** Lists sent, and entries in them all: a list or an entry lost from the middle is noticed. */
  buckets: number
  entries: number
  /** The highest `minSeq` of the reads the lists came from. */
  minSeq: Seq
}

/** `{"b":bucket,"n":count,"s":"sum","e":[["key",seq,"hash"|null],…]}` */
export function encodeBucketList(list: BucketList): string {
  let line = `{"b":${list.bucket},"n":${list.count},"s":"${encodeSum(list.sum)}","e":[`
  for (let i = 0; i < list.entries.length; i++) {
    const e = list.entries[i]!
    line += `${i > 0 ? ',' : ''}[${JSON.stringify(e.key)},${e.seq},${e.hash === null ? 'null' : `"${encodeHash(e.hash)}"`}]`
  }
  return `${line}]}`
}

/**
 * The nodes of a digest request, checked: `level` 0 … TREE_DEPTH - 1 (the leaves have no
 * children), 1 … `max` distinct indexes of that level. BadRequestError saying what is wrong.
 */
export function checkDigestRequest(level: unknown, nodes: unknown, max: number): { level: number; nodes: number[] } {
  if (!Number.isSafeInteger(level) || (level as number) < 0 || (level as number) >= TREE_DEPTH) {
    throw new BadRequestError(`digest level must be a whole number from 0 to ${TREE_DEPTH - 1} (the level whose nodes' children are asked for), got ${String(level)}`)
  }
  const l = level as number
  if (!Array.isArray(nodes) || nodes.length === 0) throw new BadRequestError(`give the digest nodes to expand at level ${l}: 1 to ${max} indexes`)
  if (nodes.length > max) throw new BadRequestError(`ask for at most ${max} digest nodes per request, not ${nodes.length}: split the request`)
  const seen = new Set<number>()
  for (const n of nodes) {
    if (!isNodeRef(l, n)) throw new BadRequestError(`digest node ${JSON.stringify(n)} is not an index of level ${l} (0 to ${nodesAt(l) - 1})`)
    if (seen.has(n as number)) throw new BadRequestError(`digest node ${n as number} is asked for twice`)
    seen.add(n as number)
  }
  return { level: l, nodes: nodes as number[] }
}

/** The buckets of a keys request, checked: 1 … 65,536 distinct whole numbers below 65,536. */
export function checkBuckets(buckets: unknown): number[] {
  const max = LIMITS.keysBucketsMax
  if (!Array.isArray(buckets) || buckets.length === 0) throw new BadRequestError(`give the buckets to list: 1 to ${max} bucket numbers`)
  if (buckets.length > max) throw new BadRequestError(`ask for at most ${max} buckets per request, not ${buckets.length}`)
  const seen = new Uint8Array(BUCKETS)
  for (const b of buckets) {
    if (!Number.isSafeInteger(b) || (b as number) < 0 || (b as number) >= BUCKETS) {
      throw new BadRequestError(`bucket ${JSON.stringify(b)} is not a bucket number (a whole number from 0 to ${BUCKETS - 1})`)
    }
    if (seen[b as number] === 1) throw new BadRequestError(`bucket ${b as number} is asked for twice`)
    seen[b as number] = 1
  }
  return buckets as number[]
}
