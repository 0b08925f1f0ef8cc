import type { Database } from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { DigestTree } from '../../digest/digest-tree.js'
import { bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
import { StoredRow } from '../../protocol/encoded.js'
import type { BucketList, Change, Seq, StateRow } from '../../protocol/types.js'
import type { ReconcileMode, ReconcileRun, RunRequest } from '../../reconcile/run.js'
import type { ApplyHook, BootstrapProgress, ClaimOptions, RehashReport, RepairFix, ReplicaState, ReplicaStore } from '../replica-store.js'
import { silentLogger, type DigestLeaf, type Logger } from '../store.js'
import { openDatabase, translateError } from './database.js'
import { DigestDeltas, FOLD_AT, ReplicaDigest } from './replica-digest.js'
import { DEFAULT_LEASE_MS } from '../replica-lease.js'
import { ensureBucketIndex, migrateReplica } from './replica-schema.js'
import { collectStep } from './replica-gc.js'
import { changeText, checkRepairAt, toState, type ReplicaRow } from '../replica-row.js'
import { claimRequest, decideClaim, holds, logNewReplica, lostClaim, releaseAll, unknownReplica } from '../replica/claim.js'
import { DigestTreeCache } from '../replica/digest-tree-cache.js'
import { GenerationDiff, type DataRow } from '../replica/generation-diff.js'
import { bootstrapping, checkBuckets, checkComplete, checkHasCopy, chunkWritten, diffBase, keptGenerations, newProgress, nextGeneration } from '../replica/generations.js'
import { RehashCheck } from '../replica/rehash.js'
import { changesAbove } from '../replica/version-writer.js'
import { bucketLists } from '../replica/bucket-lists.js'
import { BucketRows } from './replica-buckets.js'
import { SqliteGenWriter } from './replica-gen-writer.js'
import { runHook } from './replica-hook.js'
import { prepareReplicaStatements, type Statements } from './replica-statements.js'

/** Reconciliation runs kept per replica. */
const RUNS_KEPT = 100

export interface SqliteReplicaStoreOptions {
  /** Create the file when it does not exist (default true). */
  create?: boolean
  logger?: Logger
  /** The clock, ms since the Unix epoch (leases, lag bookkeeping, synthetic changes). */
  clock?: () => number
  /** Digest deltas logged before they are folded into the leaves (replica-digest.ts; default 1,048,576). */
  digestFoldAt?: number
}

/**
 * The replica side of the store port on a SQLite file: the consumer's copy of one or more feeds,
 * each under its own name, beside the consumer's own tables. Every write is one transaction that
 * also moves the digest and, for `apply`, runs the projection hook on this very connection (`db`),
 * so the consumer's tables, the copy and the checkpoint always move together.
 *
 * better-sqlite3 is synchronous: the methods are async only to fit the port, and each does its
 * work in one go (a transaction cannot span an `await`).
 */
export class SqliteReplicaStore implements ReplicaStore<Database> {
  readonly location: string
  /** The connection: the consumer reads its own tables (and `tidemark_replica_current`) through it. */
  readonly db: Database
  private readonly ownsDb: boolean
  private readonly logger: Logger
  private readonly clock: () => number
  /** This store instance's claim id: every write checks the replica's row still names it. */
  private readonly ownerId = randomBytes(8).toString('hex')
  private readonly host = hostname()
  /** Replicas this instance has claimed, with their lease length. */
  private readonly claims = new Map<string, number>()
  private readonly stmt: Statements
  private readonly digest: ReplicaDigest
  private readonly deltas = new DigestDeltas()
  private readonly foldAt: number
  private readonly trees = new DigestTreeCache()
  private readonly bucketRows: BucketRows

  /**
   * Opens (and creates, unless `create: false`) a SQLite file for replicas: WAL, busy timeout, and
   * `synchronous = NORMAL`. In WAL mode that never corrupts the file; a power cut may lose the last
   * commits, which leaves the replica a little behind at a transaction boundary (its checkpoint is
   * committed with its data), and it catches up from there.
   */
  static open(path: string, options: SqliteReplicaStoreOptions = {}): SqliteReplicaStore {
    const db = openDatabase(path, { create: options.create ?? true })
    try {
      db.pragma('synchronous = NORMAL')
      return new SqliteReplicaStore(db, path, true, options)
    } catch (error) {
      db.close()
      throw translateError(error, path)
    }
  }

  /**
   * Uses a connection the consumer already has (its own application database). The connection is
   * used as it is (its journal mode and busy timeout stay the consumer's: WAL and a busy timeout
   * are advised); `close()` releases the claims but leaves the connection open.
   */
  static attach(db: Database, options: Omit<SqliteReplicaStoreOptions, 'create'> = {}): SqliteReplicaStore {
    try {
      return new SqliteReplicaStore(db, db.name, false, options)
    } catch (error) {
      throw translateError(error, db.name)
    }
  }

  private constructor(db: Database, location: string, ownsDb: boolean, options: SqliteReplicaStoreOptions) {
    this.db = db
    this.location = location
    this.ownsDb = ownsDb
    this.logger = options.logger ?? silentLogger
    this.clock = options.clock ?? Date.now
    migrateReplica(db)
    this.stmt = prepareReplicaStatements(db)
    this.digest = new ReplicaDigest(db)
    this.digest.onAppend = (name, gen, packed) => this.trees.stage(name, gen, (tree) => tree.addPacked(packed))
    this.foldAt = options.digestFoldAt ?? FOLD_AT
    this.bucketRows = new BucketRows(db)
  }

  // ── claims ────────────────────────────────────────────────────────────────────────────────────

  async claim(name: string, feed: string, source: string, options: ClaimOptions = {}): Promise<ReplicaState> {
    const req = claimRequest(name, feed, source, options)
    const row = this.write((): ReplicaRow => {
      const now = this.clock()
      const me = [this.ownerId, process.pid, this.host, now + req.leaseMs] as const
      const r = this.stmt.replica.get(name) as ReplicaRow | undefined
      if (r === undefined) {
        this.stmt.insertReplica.run(name, feed, source, ...me, now)
        logNewReplica(this.logger, req)
      } else {
        const at = { self: this.ownerId, host: this.host, now, location: this.location, logger: this.logger }
        // A rebind empties the copy (generation 0: the replicator bootstraps afresh) and keeps the
        // old generation for the hook's diff at the swap (generations.ts, diffBase).
        if (decideClaim(r, req, at).rebind) this.stmt.rebind.run(feed, source, name)
        this.stmt.setOwner.run(...me, name)
      }
      return this.stmt.replica.get(name) as ReplicaRow
    })
    this.claims.set(name, req.leaseMs)
    this.trees.drop(name)
    return toState(row)
  }

  async renew(name: string): Promise<void> {
    const leaseMs = this.claims.get(name) ?? DEFAULT_LEASE_MS
    if (this.stmt.renew.run(this.clock() + leaseMs, name, this.ownerId).changes === 0) throw this.lostClaim(name)
  }

  async release(name: string): Promise<void> {
    this.stmt.release.run(name, this.ownerId)
    this.claims.delete(name)
    this.trees.drop(name)
  }

  // ── reading ───────────────────────────────────────────────────────────────────────────────────

  async state(name: string): Promise<ReplicaState | null> {
    const r = this.stmt.replica.get(name) as ReplicaRow | undefined
    return r === undefined ? null : toState(r)
  }

  async list(): Promise<ReplicaState[]> {
    return (this.stmt.replicas.all() as ReplicaRow[]).map(toState)
  }

  async get(name: string, key: string): Promise<StateRow | undefined> {
    const r = this.stmt.currentRow.get(name, key) as DataRow | undefined
    if (r === undefined) {
      this.known(name)
      return undefined
    }
    return new StoredRow(r.key, r.seq, r.data)
  }

  async rows(name: string, after: string | null, limit: number): Promise<StateRow[]> {
    const rows = this.stmt.currentRows.all(name, after ?? '', limit) as DataRow[]
    if (rows.length === 0) this.known(name)
    return rows.map((r) => new StoredRow(r.key, r.seq, r.data))
  }

  async digestTree(name: string): Promise<{ seq: Seq; tree: DigestTree }> {
    return this.trees.get(
      name,
      () => this.claims.has(name),
      async () => this.known(name),
      async () => this.db.transaction(() => {
        const r = this.known(name)
        return { seq: r.seq, gen: r.gen, leaves: this.digest.leaves(name, r.gen) }
      })(),
    )
  }

  async digestLeaves(name: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }> {
    return this.db.transaction(() => {
      const r = this.known(name)
      return { seq: r.seq, leaves: this.digest.leaves(name, r.gen) }
    })()
  }

  // ── bootstrap ─────────────────────────────────────────────────────────────────────────────────

  async beginBootstrap(name: string, epoch: string, s0: Seq): Promise<BootstrapProgress> {
    return this.write((): BootstrapProgress => {
      const r = this.owned(name)
      const gen = nextGeneration(r, this.stmt.maxRowGen.get(name) as number | undefined)
      this.stmt.deleteGenRows.run(name, gen)
      this.digest.dropGen(name, gen)
      const progress = newProgress(gen, epoch, s0, this.clock())
      this.stmt.beginProgress.run(JSON.stringify(progress), name)
      return progress
    })
  }

  async writeSnapshotChunk(
    name: string,
    rows: StateRow[],
    progress: { afterKey: string | null; readHead: Seq; done: boolean },
  ): Promise<void> {
    this.write(() => {
        const r = this.owned(name)
        const p = bootstrapping(r)
        const w = this.writer(name, p.gen, true)
        w.insertAll(rows)
        w.flush()
        chunkWritten(p, progress)
        this.stmt.setProgress.run(JSON.stringify(p), w.keysDelta, name)
      })
    this.afterWrite()
  }

  async applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void> {
    this.write(() => {
        const r = this.owned(name)
        const p = bootstrapping(r)
        const w = this.writer(name, p.gen, true)
        for (const c of changesAbove(changes, p.seq, upTo)) w.write(c.key, c.seq, changeText(c))
        w.flush()
        p.seq = Math.max(p.seq, upTo)
        this.stmt.setProgress.run(JSON.stringify(p), w.keysDelta, name)
      })
    this.afterWrite()
  }

  async finishBootstrap(name: string, hook?: ApplyHook<Database>): Promise<ReplicaState> {
    const row = this.write((): ReplicaRow => {
        const r = this.owned(name)
        const p = bootstrapping(r)
        checkComplete(name, p)
        if (hook) this.diff(name, diffBase(r), p, hook)
        ensureBucketIndex(this.db, p.gen)
        const now = this.clock()
        return this.stmt.swap.get(p.gen, p.epoch, p.seq, now, p.seq, p.seq, now, name) as ReplicaRow
      })
    this.logger.info({ replica: name, gen: row.gen, seq: row.seq, keys: row.keys }, `replica "${name}" is now at seq ${row.seq} (generation ${row.gen})`)
    return toState(row)
  }

  /** Calls the hook with the difference between generation `from` and the new one (GenerationDiff). */
  private diff(name: string, from: number, p: BootstrapProgress, hook: ApplyHook<Database>): void {
    const diff = new GenerationDiff(from, p.gen, p.seq, this.clock())
    for (;;) {
      const want = diff.wanted()
      if (want !== null) diff.give(this.stmt.genPage.all(name, want.gen, want.after, want.limit) as DataRow[])
      else {
        const change = diff.step()
        if (change === undefined) return
        if (change !== null) runHook(hook, change, this.db, 'bootstrap')
      }
    }
  }

  async cancelBootstrap(name: string): Promise<void> {
    this.write(() => {
      this.owned(name)
      this.stmt.cancelProgress.run(name)
    })
  }

  async collectGarbage(name: string): Promise<number> {
    let total = 0
    for (;;) {
      const n = this.write(() => collectStep(this.db, this.stmt, this.digest, this.bucketRows, name, keptGenerations(this.owned(name))))
      if (n === 0) break
      total += n
      // Short transactions with a turn of the event loop between them: the replicator goes on.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    if (total > 0) this.logger.debug({ replica: name, rows: total }, `replica "${name}": dropped ${total} rows of old generations`)
    return total
  }

  // ── live ──────────────────────────────────────────────────────────────────────────────────────

  async apply(name: string, changes: Change[], upTo: Seq, hook?: ApplyHook<Database>): Promise<ReplicaState> {
    const row = this.write((): ReplicaRow => {
        const r = this.owned(name)
        checkHasCopy(name, this.location, r)
        // Rows of the current generation are all at or below the checkpoint, so every change above
        // it wins; a delete removes the row outright (no tombstone is needed from here on).
        const w = this.writer(name, r.gen, false)
        if (hook === undefined) w.writeNewest(changes, r.seq, upTo)
        else for (const c of changesAbove(changes, r.seq, upTo)) if (w.write(c.key, c.seq, changeText(c))) runHook(hook, c, this.db, 'apply')
        w.flush()
        const seq = Math.max(r.seq, upTo)
        const now = this.clock()
        return this.stmt.advance.get(seq, w.keysDelta, seq > r.seq ? now : r.applied_at, seq, seq, now, name) as ReplicaRow
      })
    this.afterWrite()
    return toState(row)
  }

  async noteSourceHead(name: string, head: Seq): Promise<void> {
    const now = this.clock()
    if (this.stmt.noteHead.run(head, now, head, now, name, this.ownerId).changes === 0) throw this.lostClaim(name)
  }

  /**
   * One immediate write transaction. SQLite errors that mean the file itself is broken (corrupt,
   * not a database, read-only) become tidemark's errors, so a replica stops on them instead of
   * retrying for ever.
   */
  private write<T>(fn: () => T): T {
    this.trees.writeBegan()
    let result: T
    try {
      result = this.db.transaction(fn).immediate()
    } catch (error) {
      this.trees.writeEnded('rolled-back')
      throw translateError(error, this.location)
    }
    this.trees.writeEnded('committed')
    return result
  }

  async close(): Promise<void> {
    await releaseAll(this.claims.keys(), (name) => this.release(name), this.logger)
    if (this.ownsDb) this.db.close()
  }

  // ── reconciliation ────────────────────────────────────────────────────────────────────────────

  async repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<Database>): Promise<number> {
    const repaired = this.write((): number => {
      const r = this.owned(name)
      checkRepairAt(name, r, at)
      const w = this.writer(name, r.gen, false)
      const ts = this.clock()
      let n = 0
      for (const fix of fixes) {
        const change = w.repair(fix, r.seq, ts)
        if (change !== null) n++
        if (change !== null && hook) runHook(hook, change, this.db, 'repair')
      }
      w.flush()
      if (w.keysDelta !== 0) this.stmt.addKeys.run(w.keysDelta, name)
      return n
    })
    this.afterWrite()
    return repaired
  }

  async rehash(name: string): Promise<RehashReport> {
    return this.write((): RehashReport => {
      const r = this.owned(name)
      const check = new RehashCheck()
      let after = ''
      // A page at a time: better-sqlite3 cannot write while an iterator is open on the connection.
      for (;;) {
        const page = this.stmt.rehashPage.all(name, r.gen, after) as Array<{ key: string; seq: number; data: string; hash: Buffer | null; bucket: number | null }>
        for (const row of page) {
          const right = check.row({ ...row, hash: row.hash === null ? null : bufferToHash(row.hash) })
          if (right !== null) this.stmt.setRowHash.run(hashToBuffer(right.hash), right.bucket, name, r.gen, row.key)
        }
        const last = page[page.length - 1]
        if (last === undefined) break
        after = last.key
      }
      const { leaves, wrongBuckets } = check.compare(this.digest.leaves(name, r.gen))
      if (wrongBuckets > 0) {
        this.digest.replace(name, r.gen, leaves)
        this.trees.drop(name)
      }
      if (r.keys !== check.rows) this.stmt.setKeys.run(check.rows, name)
      return check.report(wrongBuckets)
    })
  }

  async bucketEntries(name: string, buckets: number[]): Promise<BucketList[]> {
    checkBuckets(buckets)
    return this.db.transaction(() => {
      const { gen } = this.known(name)
      return bucketLists(buckets, buckets.flatMap((bucket) => this.bucketRows.read(name, gen, bucket)))
    })()
  }

  async recordRun(name: string, run: ReconcileRun): Promise<number> {
    return this.write((): number => {
      this.known(name)
      const id = Number(this.stmt.insertRun.run(name, run.finishedAt, JSON.stringify(run)).lastInsertRowid)
      this.stmt.trimRuns.run(name, name, RUNS_KEPT)
      return id
    })
  }

  async runs(name: string, limit = 10): Promise<ReconcileRun[]> {
    return (this.stmt.runs.all(name, limit) as Array<{ id: number; record: string }>).map((r) => ({ ...(JSON.parse(r.record) as ReconcileRun), id: r.id }))
  }

  async requestRun(name: string, request: { mode: ReconcileMode; deep: boolean }): Promise<number> {
    return this.write((): number => {
      this.known(name)
      return Number(this.stmt.insertRequest.run(name, request.mode, request.deep ? 1 : 0, this.clock()).lastInsertRowid)
    })
  }

  async takeRunRequests(name: string): Promise<RunRequest[]> {
    // Polled every second by a running replicator: a read first, so that nothing is written when nothing is asked.
    if (this.stmt.anyRequest.get(name) === undefined) return []
    const rows = this.write(() => this.stmt.takeRequests.all(this.clock(), name) as Array<{ id: number; mode: ReconcileMode; deep: number; requested_at: number }>)
    return rows.map((r) => ({ id: r.id, mode: r.mode, deep: r.deep === 1, requestedAt: r.requested_at })).sort((a, b) => a.id - b.id)
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────────

  /** Folds the digest's log into its leaves once it has grown (in a transaction of its own). */
  private afterWrite(): void {
    if (this.digest.pending < this.foldAt) return
    try {
      const n = this.digest.fold()
      this.logger.debug({ deltas: n }, `folded ${n} digest deltas into the leaves`)
    } catch (error) {
      // What was written is committed; the fold is retried after the next write.
      this.logger.warn({ err: error }, 'could not fold the digest log (will retry)')
    }
  }

  /** The replica's row, when this store instance holds its claim (checked inside every write). */
  private owned(name: string): ReplicaRow {
    const r = this.stmt.replica.get(name) as ReplicaRow | undefined
    if (!holds(r, this.ownerId)) throw this.lostClaim(name, r)
    return r
  }

  private lostClaim(name: string, r = this.stmt.replica.get(name) as ReplicaRow | undefined): Error {
    return lostClaim(name, this.location, r, this.claims.has(name))
  }

  private known(name: string): ReplicaRow {
    const r = this.stmt.replica.get(name) as ReplicaRow | undefined
    if (r === undefined) throw unknownReplica(name, this.location)
    return r
  }

  private writer(name: string, gen: number, tombstones: boolean): SqliteGenWriter {
    return new SqliteGenWriter(this.stmt, this.digest, this.deltas, name, gen, tombstones)
  }
}
