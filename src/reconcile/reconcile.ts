/**
 * Reconciliation (DESIGN.md, "Reconcile"): compare a replica with its source by their digests,
 * top-down, one level of the digest tree per round trip; list `(key, seq, hash)` only for the leaf
 * buckets that differ; classify every difference as drift or lag; repair exactly the drifted keys.
 *
 * The replica must not move while it is compared and repaired: the caller holds its claim and
 * applies nothing meanwhile (the replica's state machine runs this as its `reconciling` phase), and
 * `ReplicaStore.repair` refuses unless the checkpoint is still the one compared at.
 *
 * The source may move on (the owner keeps writing): each answer is exact at its own position, at or
 * above the replica's checkpoint C. A key whose source version is above C is lag — the log brings
 * it — and never drift; a key whose source version is at or below C must be held by the replica
 * exactly (or not at all, for a tombstone or a key the source has no trace of).
 */
import { EpochChangedError, HistoryRewoundError, LogTruncatedError, ProtocolError, TidemarkError, asTidemarkError } from '../errors.js'
import { DigestTree, FANOUT, TREE_DEPTH, sameNode, type DigestNode } from '../digest/digest-tree.js'
import { hashToHex, rowHash } from '../digest/row-hash.js'
import type { StoredRow } from '../protocol/encoded.js'
import { LIMITS } from '../protocol/limits.js'
import type { BucketList, DigestEntry, Seq, StateRow } from '../protocol/types.js'
import { compareKeys } from '../protocol/key-order.js'
import type { ApplyHook, RehashReport, RepairFix, ReplicaStore } from '../store/replica-store.js'
import type { FeedSource, Traffic } from '../transport/feed-source.js'
import { DRIFT_LISTED, type DriftedKey, type ReconcileMode, type ReconcileRun, type ReconcileTrigger } from './run.js'

export interface ReconcileOptions<Tx> {
  source: FeedSource
  feed: string
  store: ReplicaStore<Tx>
  /** The replica's name in its store (claimed by the caller). */
  name: string
  mode: ReconcileMode
  /** Recompute the replica's digest from its rows first (rows or digest edited outside tidemark). */
  deep?: boolean
  trigger: ReconcileTrigger
  /** The projection hook: repairs go through it, in the same transaction, like applied changes. */
  hook?: ApplyHook<Tx>
  requestId?: number
  signal?: AbortSignal
  now?: () => number
}

/** A node above the leaves holding at most this many keys on both sides has its buckets listed without descending. */
const SPARSE_NODE = 32

/** Buckets read from the replica per store call, while the source's lists stream in. */
const REPLICA_BUCKETS = 256

/**
 * Runs one reconciliation and records it in the replica's store. A run that cannot check (the
 * source unreachable, an answer that does not add up) is recorded as `failed` and returned, not
 * thrown — except a failing projection hook or a lost claim, which stop the replica as they would
 * in `apply`.
 */
export async function reconcile<Tx>(options: ReconcileOptions<Tx>): Promise<ReconcileRun> {
  const now = options.now ?? Date.now
  const run = new Run(options, now)
  try {
    await run.execute()
  } catch (error) {
    const e = asTidemarkError(error)
    if (e.code === 'apply-failed' || e.code === 'conflict' || e.code === 'not-a-store') throw error
    if (options.signal?.aborted) throw error
    run.record.outcome = error instanceof EpochChangedError || error instanceof HistoryRewoundError || error instanceof LogTruncatedError ? 'rebootstrap' : 'failed'
    run.record.error = e.message
  }
  run.finish()
  run.record.id = await options.store.recordRun(options.name, run.record)
  return run.record
}

class Run<Tx> {
  readonly record: ReconcileRun
  private readonly o: ReconcileOptions<Tx>
  private readonly start: Traffic | undefined
  private epoch = ''

  constructor(options: ReconcileOptions<Tx>, private readonly now: () => number) {
    this.o = options
    this.start = options.source.traffic?.()
    this.record = {
      trigger: options.trigger,
      mode: options.mode,
      deep: options.deep === true,
      startedAt: now(),
      finishedAt: 0,
      outcome: 'intact',
      checkpoint: 0,
      epoch: null,
      sourceSeq: 0,
      cost: { roundTrips: 0, bytesSent: 0, bytesReceived: 0, nodes: 0, buckets: 0, keys: 0 },
      drifted: 0,
      repaired: 0,
      lagging: 0,
      drift: [],
      ...(options.requestId !== undefined ? { requestId: options.requestId } : {}),
    }
  }

  finish(): void {
    this.record.finishedAt = this.now()
    const end = this.o.source.traffic?.()
    if (this.start && end) {
      this.record.cost.bytesSent = end.bytesSent - this.start.bytesSent
      this.record.cost.bytesReceived = end.bytesReceived - this.start.bytesReceived
    }
  }

  async execute(): Promise<void> {
    const { store, name, source, feed, signal } = this.o
    let state = await store.state(name)
    if (state === null) throw new TidemarkError('bad-request', `no replica "${name}" in ${store.location}`)
    if (state.gen === 0 || state.epoch === null) {
      throw new TidemarkError('bad-request', `replica "${name}" has no copy yet (it is bootstrapping): there is nothing to compare`)
    }
    if (this.o.deep) {
      const report = await store.rehash(name)
      this.noteRehash(report)
      state = (await store.state(name)) ?? state
    }
    const C = state.seq
    this.epoch = state.epoch as string
    this.record.checkpoint = C
    this.record.epoch = this.epoch
    // A copy: the store's live tree would move under a later repair in this run.
    const mine = (await store.digestTree(name)).tree.clone()

    // Round trip 1: the root and its children. Equal roots: intact, whatever the size.
    const top = await this.digest(0, [0])
    this.record.cost.nodes += 1
    const root = top.nodes[0]
    if (root === undefined) throw new ProtocolError(`${source.description} answered no root for feed "${feed}"`)
    if (sameNode(root.node, mine.root)) return

    // Narrow down, one level per round trip, to the leaf buckets that differ. A differing node just
    // above the leaves that holds few keys on both sides has its 16 buckets listed at once: about
    // the bytes of its 16 leaf sums, one round trip fewer (small feeds need fewer levels).
    const buckets: number[] = []
    let differing = this.differingChildren(0, [{ index: 0, children: root.children }], mine)
    for (let level = 1; level < TREE_DEPTH && differing.length > 0; level++) {
      signal?.throwIfAborted()
      if (level === TREE_DEPTH - 1) {
        const dense: typeof differing = []
        for (const d of differing) {
          if (d.theirs.count <= SPARSE_NODE && mine.node(level, d.index).count <= SPARSE_NODE) {
            for (let c = 0; c < FANOUT; c++) buckets.push(d.index * FANOUT + c)
          } else dense.push(d)
        }
        differing = dense
        if (differing.length === 0) break
      }
      const page = await this.digest(
        level,
        differing.map((d) => d.index),
      )
      differing = this.differingChildren(level, page.nodes, mine)
    }
    for (const d of differing) buckets.push(d.index)
    if (buckets.length === 0) return

    const drifted = await this.compareBuckets(buckets, mine, C)
    this.record.drifted = drifted.length
    this.record.drift = drifted.slice(0, DRIFT_LISTED).map((d) => d.report)
    if (drifted.length === 0) return
    if (this.o.mode === 'verify') {
      this.record.outcome = 'drift'
      return
    }
    await this.repair(drifted, C)
    this.record.outcome = 'repaired'
  }

  private noteRehash(report: RehashReport): void {
    if (report.staleRows > 0 || report.wrongBuckets > 0) {
      this.record.digestRepair = { buckets: report.wrongBuckets, rows: report.staleRows }
    }
  }

  private async digest(level: number, nodes: number[]) {
    this.record.cost.roundTrips++
    const page = await this.o.source.digest(this.o.feed, { level, nodes, epoch: this.epoch, ...(this.o.signal ? { signal: this.o.signal } : {}) })
    this.record.sourceSeq = Math.max(this.record.sourceSeq, page.seq)
    if (page.seq < this.record.checkpoint) {
      throw new HistoryRewoundError(this.o.feed, page.seq, this.record.checkpoint)
    }
    if (page.minSeq > this.record.checkpoint + 1) {
      throw new LogTruncatedError(this.o.feed, this.record.checkpoint, page.minSeq)
    }
    return page
  }

  /** The children (at level + 1) that differ between the source's answer and the replica's tree, with the source's node. */
  private differingChildren(level: number, nodes: Array<{ index: number; children: DigestNode[] }>, mine: DigestTree): Array<{ index: number; theirs: DigestNode }> {
    const out: Array<{ index: number; theirs: DigestNode }> = []
    for (const { index, children } of nodes) {
      for (let c = 0; c < FANOUT; c++) {
        const child = index * FANOUT + c
        const theirs = children[c] as DigestNode
        this.record.cost.nodes++
        if (!sameNode(theirs, mine.node(level + 1, child))) out.push({ index: child, theirs })
      }
    }
    return out
  }

  /** Compares the key lists of the differing buckets; returns the drifted keys (lag is only counted). */
  private async compareBuckets(buckets: number[], mine: DigestTree, C: Seq): Promise<Drift[]> {
    const { store, name, source, feed } = this.o
    this.record.cost.roundTrips++
    this.record.cost.buckets += buckets.length
    const listing = await source.keys(feed, { buckets, epoch: this.epoch, ...(this.o.signal ? { signal: this.o.signal } : {}) })
    const drifted: Drift[] = []
    let inconsistent = 0
    let i = 0
    let batch: BucketList[] = []
    let batchAt = 0
    for await (const theirs of listing.lists) {
      if (i - batchAt >= batch.length) {
        batchAt = i
        batch = await store.bucketEntries(name, buckets.slice(i, i + REPLICA_BUCKETS))
      }
      const ours = batch[i - batchAt] as BucketList
      i++
      if (ours.bucket !== theirs.bucket) throw new ProtocolError(`${source.description} listed bucket ${theirs.bucket} where ${ours.bucket} was due`)
      // The replica's stored digest should be the sum of its rows' hashes; if not, it was edited.
      if (!sameNode(ours, mine.node(TREE_DEPTH, ours.bucket))) inconsistent++
      this.record.cost.keys += theirs.entries.length + ours.entries.length
      this.compareEntries(theirs.entries, ours.entries, C, drifted)
    }
    if (i !== buckets.length) throw new ProtocolError(`${source.description} listed ${i} of the ${buckets.length} buckets asked for`)
    if (listing.minSeq > C + 1) throw new LogTruncatedError(feed, C, listing.minSeq)
    if (inconsistent > 0) {
      const message = `the replica's digest disagrees with its own rows in ${inconsistent} bucket(s): rows or digest were edited outside tidemark; run with --deep`
      if (this.o.mode === 'repair' && !this.o.deep) {
        // Repairing from a wrong digest would miss what it hides: recompute it, then compare again.
        this.noteRehash(await store.rehash(name))
      }
      this.record.error = message
      if (drifted.length === 0 && this.o.mode === 'verify') this.record.outcome = 'drift'
    }
    return drifted
  }

  /** Merges two key-ordered lists of one bucket. */
  private compareEntries(theirs: DigestEntry[], ours: DigestEntry[], C: Seq, out: Drift[]): void {
    let a = 0
    let b = 0
    while (a < theirs.length || b < ours.length) {
      const s = theirs[a]
      const r = ours[b]
      const order = s === undefined ? 1 : r === undefined ? -1 : compareKeys(s.key, r.key)
      if (order > 0) {
        // The source has no trace of the key (not even a tombstone: any delete was before minSeq ≤ C + 1).
        b++
        out.push(drift(r as DigestEntry, null, r as DigestEntry))
        continue
      }
      a++
      if (order === 0) b++
      const src = s as DigestEntry
      const rep = order === 0 ? (r as DigestEntry) : null
      if (rep !== null && rep.seq === src.seq && rep.hash === src.hash) continue
      if (src.seq > C) {
        // Lag, unless the replica holds a version above its own checkpoint, which nothing it applied
        // can have written: the log would never replace it ("higher seq wins"), so it is drift.
        if (rep === null || rep.seq <= C) {
          this.record.lagging++
          continue
        }
      }
      if (src.hash === null && rep === null) continue
      out.push(drift(src, src, rep))
    }
  }

  /** Fetches exactly the drifted keys and writes them in the replica's apply transaction. */
  private async repair(drifted: Drift[], C: Seq): Promise<void> {
    const { store, name, source, feed, hook } = this.o
    for (let i = 0; i < drifted.length; i += LIMITS.rowsMax) {
      const chunk = drifted.slice(i, i + LIMITS.rowsMax)
      this.record.cost.roundTrips++
      const page = await source.rows(
        feed,
        chunk.map((d) => d.key),
        this.o.signal,
      )
      if (page.epoch !== this.epoch) throw new EpochChangedError(feed, this.epoch, page.epoch)
      const rows = new Map<string, StateRow>(page.rows.map((r) => [r.key, r]))
      const fixes: RepairFix[] = []
      for (const d of chunk) {
        const row = rows.get(d.key) ?? null
        if (row !== null && row.seq > C) {
          // Written again since it was listed: the log brings the new version, unless the replica
          // holds a version above its checkpoint, which would shadow it — that one goes.
          if (d.report.replica !== null && d.report.replica.seq > C) fixes.push({ key: d.key, row: null })
          else this.record.lagging++
          continue
        }
        checkAgainstListing(d, row, source.description)
        fixes.push({ key: d.key, row })
      }
      this.record.repaired += await store.repair(name, fixes, { epoch: this.epoch, seq: C }, hook)
    }
  }
}

interface Drift {
  key: string
  /** The source's entry as listed (null: no trace of the key). */
  listed: DigestEntry | null
  report: DriftedKey
}

function drift(at: DigestEntry, src: DigestEntry | null, rep: DigestEntry | null): Drift {
  const kind = rep === null ? 'missing' : src === null || src.hash === null ? 'extra' : 'differs'
  return {
    key: at.key,
    listed: src,
    report: {
      key: at.key,
      kind,
      source: src === null ? null : { seq: src.seq, hash: src.hash === null ? null : hashToHex(src.hash) },
      replica: rep === null || rep.hash === null ? null : { seq: rep.seq, hash: hashToHex(rep.hash) },
    },
  }
}

/**
 * The rows answer must agree with the key list at or below the checkpoint (both are the source's
 * state there, which does not change): a disagreement is a source that lies or is broken, and
 * repairing from it would write wrong data.
 */
function checkAgainstListing(d: Drift, row: StateRow | null, source: string): void {
  const listed = d.listed
  const what = `${source}: key ${JSON.stringify(d.key)}`
  if (listed === null) {
    if (row !== null && !row.deleted) throw new ProtocolError(`${what} is listed as absent but its row came back at seq ${row.seq}`)
    return
  }
  if (row === null) {
    if (listed.hash !== null) throw new ProtocolError(`${what} is listed at seq ${listed.seq} but its row did not come back`)
    return
  }
  if (row.seq !== listed.seq) throw new ProtocolError(`${what} is listed at seq ${listed.seq} but its row came back at seq ${row.seq}`)
  if (listed.hash === null) {
    if (!row.deleted) throw new ProtocolError(`${what} is listed as deleted at seq ${listed.seq} but came back with data`)
    return
  }
  if (row.deleted) throw new ProtocolError(`${what} is listed with data at seq ${listed.seq} but came back deleted`)
  const text = (row as Partial<StoredRow>).dataText ?? JSON.stringify(row.data)
  if (rowHash(row.key, row.seq, text) !== listed.hash) {
    throw new ProtocolError(`${what}: the row's data does not hash to the listed hash at seq ${listed.seq}`)
  }
}
