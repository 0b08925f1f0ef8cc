/**
 * Reading the `digest` and `keys` answers on the replica's side (docs/protocol.md, "Digest"
 * endpoints), trusting nothing: a digest whose children do not add up to their parent, a bucket
 * list whose entries do not make its count and sum, a key listed under a bucket it does not hash
 * to, keys out of order, a list missing or out of place, a listing cut before its end line — each
 * is a ProtocolError saying what. A misbehaving server then fails the reconciliation instead of
 * making it report (or repair) drift that is not there.
 */
import { FANOUT, childrenAddUp, type DigestNode } from '../../digest/digest-tree.js'
import { addHash, bucketOf } from '../../digest/row-hash.js'
import { EpochChangedError, ProtocolError } from '../../errors.js'
import { decodeHash, decodeSum } from '../../protocol/digest-wire.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { BucketList, DigestEntry, Seq } from '../../protocol/types.js'
import type { DigestPage } from '../feed-source.js'
import type { ErrorLineHandler } from './page-readers.js'
import { excerpt, isPositiveSeq, isSeq, parseLine } from './wire-lines.js'

/** The body of a `digest` answer, checked against what was asked. */
export function decodeDigestPage(text: string, asked: { feed: string; level: number; nodes: number[]; epoch?: string | undefined }): DigestPage {
  const doc = parseLine(text)
  const { epoch, seq, head, minSeq, level, nodes } = doc
  if (typeof epoch !== 'string' || epoch === '' || !isSeq(seq) || !isSeq(head) || !isSeq(minSeq) || !Array.isArray(nodes)) {
    throw new ProtocolError(`the digest answer needs epoch, seq, head, minSeq, level and nodes: ${excerpt(text)}`)
  }
  if (asked.epoch !== undefined && epoch !== asked.epoch) throw new EpochChangedError(asked.feed, asked.epoch, epoch)
  if (seq > head) throw new ProtocolError(`the digest answer is read at seq ${seq}, above its head ${head}`)
  if (minSeq < 1 || minSeq > head + 1) throw new ProtocolError(`the digest answer has minSeq ${minSeq} with head ${head}`)
  if (level !== asked.level) throw new ProtocolError(`the digest answer is for level ${String(level)}, not the level ${asked.level} asked for`)
  if (nodes.length !== asked.nodes.length) {
    throw new ProtocolError(`the digest answer has ${nodes.length} nodes where ${asked.nodes.length} were asked for`)
  }
  const out: DigestPage['nodes'] = []
  for (let i = 0; i < nodes.length; i++) {
    const index = asked.nodes[i] as number
    const n: unknown = nodes[i]
    const where = `digest node ${index} of level ${asked.level}`
    if (!Array.isArray(n) || n.length !== 4) throw new ProtocolError(`${where} is not [index, count, sum, children]: ${excerpt(JSON.stringify(n))}`)
    if (n[0] !== index) throw new ProtocolError(`the digest answer has node ${shown(n[0])} where node ${index} was asked for`)
    const node = decodeNode(n[1], n[2], where)
    const kids: unknown = n[3]
    if (!Array.isArray(kids) || kids.length !== FANOUT) throw new ProtocolError(`${where} does not have ${FANOUT} children: ${excerpt(JSON.stringify(kids))}`)
    const children = kids.map((c: unknown, k: number): DigestNode => {
      if (!Array.isArray(c) || c.length !== 2) throw new ProtocolError(`child ${k} of ${where} is not [count, sum]: ${excerpt(JSON.stringify(c))}`)
      return decodeNode(c[0], c[1], `child ${k} of ${where}`)
    })
    if (!childrenAddUp(node, children)) {
      throw new ProtocolError(`the children of ${where} do not add up to it (count ${node.count}): the digest answer is wrong or torn`)
    }
    out.push({ index, node, children })
  }
  return { epoch, seq, head, minSeq, level: asked.level, nodes: out }
}

function decodeNode(count: unknown, sum: unknown, where: string): DigestNode {
  if (!isSeq(count)) throw new ProtocolError(`${where} has count ${shown(count)}, not a whole number`)
  const s = decodeSum(sum)
  if (s === undefined) throw new ProtocolError(`${where} has sum ${shown(sum)}, not 16 bytes in base64url`)
  if (count === 0 && s !== 0n) throw new ProtocolError(`${where} has no rows but a sum`)
  return { count, sum: s }
}

/**
 * One `keys` listing, line by line: `head` takes the first line, `line` each further one (a list,
 * returned, or the end line), `finish` the end of the body.
 */
export class KeysListingReader {
  epoch = ''
  seq: Seq = 0
  /** The highest minSeq seen: the first line's, then the end line's. */
  minSeq: Seq = 0
  private next = 0
  private entries = 0
  private ended = false

  constructor(
    private readonly feed: string,
    private readonly buckets: readonly number[],
    /** The epoch the response's header announced. */
    private readonly headerEpoch: string,
    private readonly onError: ErrorLineHandler,
  ) {}

  head(text: string): void {
    const value = parseLine(text)
    if (typeof value.error === 'string') throw this.onError(value)
    const { epoch, seq, minSeq } = value
    if (typeof epoch !== 'string' || !isSeq(seq) || !isPositiveSeq(minSeq)) {
      throw new ProtocolError(`the keys listing's first line needs epoch, seq and minSeq: ${excerpt(text)}`)
    }
    if (epoch !== this.headerEpoch) throw new EpochChangedError(this.feed, this.headerEpoch, epoch)
    this.epoch = epoch
    this.seq = seq
    this.minSeq = minSeq
  }

  /** A bucket list, or undefined for the end line. */
  line(text: string): BucketList | undefined {
    if (this.ended) throw new ProtocolError(`a line follows the end line of the keys listing: ${excerpt(text)}`)
    const value = parseLine(text)
    if (typeof value.error === 'string') throw this.onError(value)
    if (value.end === true) {
      this.checkEnd(value)
      return undefined
    }
    return this.list(value, text)
  }

  finish(partialBytes: number): void {
    if (this.ended) return
    const mid = partialBytes > 0 ? ` (mid-line, ${partialBytes} bytes into the next)` : ''
    throw new ProtocolError(`response cut after ${this.next} of ${this.buckets.length} bucket lists${mid}: the keys listing has no end line`)
  }

  private list(value: Record<string, unknown>, text: string): BucketList {
    const { b, n, s, e } = value
    const due = this.buckets[this.next]
    if (due === undefined) throw new ProtocolError(`the keys listing has more lists than the ${this.buckets.length} buckets asked for`)
    if (b !== due) throw new ProtocolError(`the keys listing has bucket ${shown(b)} where bucket ${due} was due`)
    const sum = decodeSum(s)
    if (!isSeq(n) || sum === undefined || !Array.isArray(e)) {
      throw new ProtocolError(`bucket ${due}'s list needs a count n, a sum s and entries e: ${excerpt(text)}`)
    }
    const entries: DigestEntry[] = []
    let count = 0
    let total = 0n
    let last: string | undefined
    for (const item of e as unknown[]) {
      if (!Array.isArray(item) || item.length !== 3) throw new ProtocolError(`bucket ${due} has an entry that is not [key, seq, hash]: ${excerpt(JSON.stringify(item))}`)
      const [key, seq, h] = item as [unknown, unknown, unknown]
      if (typeof key !== 'string' || key === '') throw new ProtocolError(`bucket ${due} has an entry with key ${excerpt(JSON.stringify(key), 80)}`)
      const where = `key ${excerpt(key, 80)} of bucket ${due}`
      if (!isPositiveSeq(seq)) throw new ProtocolError(`${where} has seq ${shown(seq)}`)
      const hash = h === null ? null : decodeHash(h)
      if (hash === undefined) throw new ProtocolError(`${where} has hash ${shown(h)}, not 16 bytes in base64url or null`)
      if (bucketOf(key) !== due) throw new ProtocolError(`${where} hashes into bucket ${bucketOf(key)}: the list is wrong`)
      if (last !== undefined && compareKeys(key, last) <= 0) {
        throw new ProtocolError(`bucket ${due} lists ${excerpt(key, 80)} after ${excerpt(last, 80)}: keys must rise, each once`)
      }
      if (hash !== null) {
        count++
        total = addHash(total, hash)
      }
      last = key
      entries.push({ key, seq, hash })
    }
    if (count !== n || total !== sum) {
      throw new ProtocolError(`bucket ${due}'s entries make ${count} rows${total === sum ? '' : ' and another sum'}, but the list says ${n}: the list is wrong or torn`)
    }
    this.next++
    this.entries += entries.length
    return { bucket: due, count: n, sum, entries }
  }

  private checkEnd(end: Record<string, unknown>): void {
    const { epoch, buckets, entries, minSeq } = end
    if (typeof epoch !== 'string' || !isSeq(buckets) || !isSeq(entries) || !isPositiveSeq(minSeq)) {
      throw new ProtocolError(`the keys listing's end line needs epoch, buckets, entries and minSeq: ${excerpt(JSON.stringify(end))}`)
    }
    // The feed was reset while the listing was read: the lists belong to two histories.
    if (epoch !== this.epoch) throw new EpochChangedError(this.feed, this.epoch, epoch)
    if (buckets !== this.next || entries !== this.entries) {
      throw new ProtocolError(`the keys listing's end line counts ${buckets} lists and ${entries} entries, but ${this.next} and ${this.entries} were sent`)
    }
    if (this.next !== this.buckets.length) {
      throw new ProtocolError(`the keys listing ended after ${this.next} of the ${this.buckets.length} buckets asked for`)
    }
    this.minSeq = Math.max(this.minSeq, minSeq)
    this.ended = true
  }
}

/** A value as JSON, shortened, for a message. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length <= 40 ? text : `${text.slice(0, 40)}…`
}
