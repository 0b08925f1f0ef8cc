import { addHash, hashToHex } from '../src/digest/row-hash.js'
import type { Seq, StateRow } from '../src/protocol/types.js'
import type { ReplicaStore } from '../src/store/replica-store.js'
import { compareKeys as compareUtf8 } from '../src/protocol/key-order.js'
import type { DigestLeaf, SourceStore } from '../src/store/store.js'

const PAGE = 2000

export interface DigestSide {
  seq: Seq
  count: number
  /** The sum of all leaves' sums, mod 2^128, as 32 hex digits. */
  sum: string
}

export interface Comparison {
  owner: DigestSide
  replica: DigestSide
  /** Same position, and every leaf (bucket, count, sum) the same. */
  digestEqual: boolean
  /** Rows compared one by one: key, seq and data text. */
  rows: { compared: number; differing: number; firstDifference: string | null; ownerHead: Seq }
  rowsEqual: boolean
}

/**
 * Compares a replica with its source twice over: by digest (the leaves on both sides), and row by
 * row (both states walked in key order). The source must not be written meanwhile, so that both
 * sides are read at one position.
 */
export async function compareWithOwner(source: SourceStore, feed: string, replica: ReplicaStore, name: string): Promise<Comparison> {
  const [ownerDigest, replicaDigest] = [await source.digestLeaves(feed), await replica.digestLeaves(name)]
  const owner = side(ownerDigest)
  const theirs = side(replicaDigest)
  const digestEqual = owner.seq === theirs.seq && sameLeaves(ownerDigest.leaves, replicaDigest.leaves)
  const rows = await compareRows(source, feed, replica, name)
  return {
    owner,
    replica: theirs,
    digestEqual,
    rows,
    rowsEqual: rows.differing === 0 && rows.ownerHead === replicaDigest.seq,
  }
}

function side(d: { seq: Seq; leaves: DigestLeaf[] }): DigestSide {
  let count = 0
  let sum = 0n
  for (const l of d.leaves) {
    count += l.count
    sum = addHash(sum, l.sum)
  }
  return { seq: d.seq, count, sum: hashToHex(sum) }
}

function sameLeaves(a: DigestLeaf[], b: DigestLeaf[]): boolean {
  if (a.length !== b.length) return false
  return a.every((l, i) => l.bucket === b[i]?.bucket && l.count === b[i]?.count && l.sum === b[i]?.sum)
}

/** Walks both states in key order (SQLite's order on both sides), counting keys that differ. */
async function compareRows(source: SourceStore, feed: string, replica: ReplicaStore, name: string): Promise<Comparison['rows']> {
  const read = { ownerHead: -1 }
  const ownerRows = ownerState(source, feed, read)
  const replicaRows = replicaState(replica, name)
  let o = await ownerRows.next()
  let r = await replicaRows.next()
  let compared = 0
  let differing = 0
  let firstDifference: string | null = null
  const differ = (what: string): void => {
    differing++
    firstDifference ??= what
  }
  for (;;) {
    const order = o.done ? (r.done ? 0 : 1) : r.done ? -1 : compareUtf8(o.value.key, r.value.key)
    if (o.done && r.done) break
    compared++
    if (order < 0) {
      differ(`key ${JSON.stringify((o.value as StateRow).key)} is missing from the replica`)
      o = await ownerRows.next()
    } else if (order > 0) {
      differ(`key ${JSON.stringify((r.value as StateRow).key)} is in the replica only`)
      r = await replicaRows.next()
    } else {
      const mine = o.value as StateRow
      const theirs = r.value as StateRow
      if (mine.seq !== theirs.seq || text(mine) !== text(theirs)) {
        differ(`key ${JSON.stringify(mine.key)}: the owner has seq ${mine.seq}, the replica seq ${theirs.seq}`)
      }
      o = await ownerRows.next()
      r = await replicaRows.next()
    }
  }
  return { compared, differing, firstDifference, ownerHead: read.ownerHead }
}

/** The owner's state rows in key order; `read.ownerHead` is the head the chunks were read at (one, while nobody writes). */
async function* ownerState(store: SourceStore, feed: string, read: { ownerHead: Seq }): AsyncGenerator<StateRow> {
  let after: string | null = null
  for (;;) {
    const chunk = await store.snapshot(feed, after, PAGE)
    if (read.ownerHead !== -1 && read.ownerHead !== chunk.head) read.ownerHead = Number.NaN
    else read.ownerHead = chunk.head
    yield* chunk.rows
    if (chunk.done) return
    after = chunk.last
  }
}

async function* replicaState(store: ReplicaStore, name: string): AsyncGenerator<StateRow> {
  let after: string | null = null
  for (;;) {
    const rows = await store.rows(name, after, PAGE)
    yield* rows
    if (rows.length < PAGE) return
    after = (rows[rows.length - 1] as StateRow).key
  }
}

/** A row's data as JSON text: as stored when the store kept it, else serialized. */
function text(row: StateRow): string {
  const stored = (row as { dataText?: unknown }).dataText
  return typeof stored === 'string' ? stored : JSON.stringify(row.data)
}
