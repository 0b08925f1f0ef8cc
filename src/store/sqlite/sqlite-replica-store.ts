import { HashedRow } from '../../digest/hashed-row.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { Database, Statement } from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { ApplyFailedError, BadRequestError, ConflictError } from '../../errors.js'
import { DigestTree } from '../../digest/digest-tree.js'
import { addHash, bucketOf, bufferToHash, DIGEST_BITS, rowHashHex } from '../../digest/row-hash.js'
import { StoredChange, StoredRow } from '../../protocol/encoded.js'
import type { BucketList, Change, DigestEntry, Seq, StateRow } from '../../protocol/types.js'
import type { ReconcileMode, ReconcileRun, RunRequest } from '../../reconcile/run.js'
import type {
  ApplyContext,
  ApplyHook,
  BootstrapProgress,
  ClaimOptions,
  RehashReport,
  RepairFix,
  ReplicaState,
  ReplicaStore,
} from '../replica-store.js'
import { silentLogger, type DigestLeaf, type Logger } from '../store.js'
import { openDatabase, translateError } from './database.js'
import { DigestDeltas, FOLD_AT, ReplicaDigest } from './replica-digest.js'
import { checkLease, DEFAULT_LEASE_MS, describeOwner } from '../replica-lease.js'
import { bucketIndexName, dropBucketIndex, ensureBucketIndex, migrateReplica } from './replica-schema.js'
import { changeText, checkRepairAt, checkReplicaName, checkUpTo, ownerOf, progressOf, repairVersion, rowText, toState, type ReplicaRow } from '../replica-row.js'

/** Rows read per page when diffing two generations, and deleted per transaction by the garbage collector. */
const DIFF_PAGE = 1000
const GC_CHUNK = 10_000
/** Reconciliation runs kept per replica. */
const RUNS_KEPT = 100
/** Snapshot rows inserted, and live versions upserted, per statement. */
const INSERT_BATCH = 100
/** Keys whose versions held are read per statement by a live apply. */
const READ_BATCH = 5000

export interface SqliteReplicaStoreOptions {
  /** Create the file when it does not exist (default true). */
  create?: boolean
  logger?: Logger
  /** The clock, ms since the Unix epoch (leases, lag bookkeeping, synthetic changes). */
  clock?: () => number
  /** Digest deltas logged before they are folded into the leaves (replica-digest.ts; default 1,048,576). */
  digestFoldAt?: number
}


interface DataRow {
  key: string
  seq: number
  data: string
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
  private readonly stmt: ReturnType<typeof prepare>
  private readonly digest: ReplicaDigest
  private readonly deltas = new DigestDeltas()
  private readonly foldAt: number
  /**
   * The current copy's digest tree per replica this instance has claimed: only the claim holder
   * writes, so applying each committed transaction's deltas keeps it exact. Deltas wait in
   * `uncommitted` until their transaction commits.
   */
  private readonly trees = new Map<string, { gen: number; tree: DigestTree }>()
  private uncommitted: Array<{ name: string; gen: number; packed: Buffer }> = []
  /** Bucket listings per generation (each names its generation's own partial index). */
  private readonly bucketStatements = new Map<number, Statement>()

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
    this.stmt = prepare(db)
    this.digest = new ReplicaDigest(db)
    this.digest.onAppend = (name, gen, packed) => {
      if (this.trees.get(name)?.gen === gen) this.uncommitted.push({ name, gen, packed })
    }
    this.foldAt = options.digestFoldAt ?? FOLD_AT
  }

  // ── claims ────────────────────────────────────────────────────────────────────────────────────

  async claim(name: string, feed: string, source: string, options: ClaimOptions = {}): Promise<ReplicaState> {
    checkReplicaName(name)
    const { force = false, leaseMs = DEFAULT_LEASE_MS } = options
    if (!Number.isSafeInteger(leaseMs) || leaseMs < 1) throw new BadRequestError(`a lease must last a positive number of ms, got ${leaseMs}`)
    const row = this.write((): ReplicaRow => {
        const now = this.clock()
        const me = [this.ownerId, process.pid, this.host, now + leaseMs] as const
        const r = this.stmt.replica.get(name) as ReplicaRow | undefined
        if (r === undefined) {
          this.stmt.insertReplica.run(name, feed, source, ...me, now)
          this.logger.info({ replica: name, feed, source }, `new replica "${name}" of feed "${feed}" at ${source}`)
          return this.stmt.replica.get(name) as ReplicaRow
        }
        const previous = ownerOf(r)
        const lease = checkLease(previous, this.ownerId, now, this.host)
        if (lease.holder !== null) {
          throw new ConflictError(
            `replica "${name}" in ${this.location} is being replicated by ${describeOwner(lease.holder)}: stop it first`,
          )
        }
        if (r.feed !== feed || r.source !== source) {
          const bound = `feed "${r.feed}" from ${r.source}`
          if (!force) {
            throw new ConflictError(
              `replica "${name}" in ${this.location} copies ${bound}, not feed "${feed}" from ${source}: ` +
                'use another replica name, or force the claim to rebind it (it will re-bootstrap)',
            )
          }
          // The copy is emptied (generation 0: the replicator bootstraps afresh). Its old generation
          // stays until the new one is swapped in: the hook's diff starts from it, so the consumer's
          // tables move from the old source's state to the new one's at once.
          this.stmt.rebind.run(feed, source, name)
          this.logger.warn({ replica: name, feed, source, was: { feed: r.feed, source: r.source } }, `replica "${name}" rebound from ${bound} to feed "${feed}" from ${source}: it will re-bootstrap`)
        }
        if (lease.takeover !== null && previous !== null) {
          this.logger.warn(
            { replica: name, pid: previous.pid, host: previous.host, reason: lease.takeover },
            `replica "${name}": taking over from pid ${previous.pid} on host ${previous.host} (${lease.takeover === 'expired' ? 'its lease expired' : 'that process is gone'})`,
          )
        }
        this.stmt.setOwner.run(...me, name)
        return this.stmt.replica.get(name) as ReplicaRow
      })
    this.claims.set(name, leaseMs)
    return toState(row)
  }

  async renew(name: string): Promise<void> {
    const leaseMs = this.claims.get(name) ?? DEFAULT_LEASE_MS
    if (this.stmt.renew.run(this.clock() + leaseMs, name, this.ownerId).changes === 0) throw this.lostClaim(name)
  }

  async release(name: string): Promise<void> {
    this.stmt.release.run(name, this.ownerId)
    this.claims.delete(name)
    this.trees.delete(name)
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
    const r = this.known(name)
    const cached = this.trees.get(name)
    if (cached !== undefined && cached.gen === r.gen && this.claims.has(name)) return { seq: r.seq, tree: cached.tree }
    const { seq, leaves } = await this.digestLeaves(name)
    const tree = new DigestTree(leaves)
    const now = this.known(name)
    // Kept only while this instance holds the claim (nobody else writes the replica then).
    if (this.claims.has(name) && now.seq === seq) this.trees.set(name, { gen: now.gen, tree })
    return { seq, tree }
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
        const s = this.stmt
        // A new generation above every one present, garbage included: it starts empty.
        const gen = Math.max(r.gen, progressOf(r)?.gen ?? 0, r.previous_gen ?? 0, (s.maxRowGen.get(name) as number | undefined) ?? 0) + 1
        s.deleteGenRows.run(name, gen)
        this.digest.dropGen(name, gen)
        const progress: BootstrapProgress = {
          gen,
          epoch,
          s0,
          afterKey: null,
          snapshotDone: false,
          readHead: s0,
          seq: s0,
          startedAt: this.clock(),
        }
        s.beginProgress.run(JSON.stringify(progress), name)
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
        const p = this.bootstrapping(r)
        const w = new GenWriter(this.stmt, this.digest, this.deltas, name, p.gen, true)
        w.insertAll(rows)
        w.flush()
        p.afterKey = progress.afterKey
        p.readHead = Math.max(p.readHead, progress.readHead)
        p.snapshotDone = progress.done
        this.stmt.setProgress.run(JSON.stringify(p), w.keysDelta, name)
      })
    this.afterWrite()
  }

  async applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void> {
    this.write(() => {
        const r = this.owned(name)
        const p = this.bootstrapping(r)
        const w = new GenWriter(this.stmt, this.digest, this.deltas, name, p.gen, true)
        for (const c of changes) {
          if (c.seq <= p.seq) continue
          checkUpTo(c, upTo)
          w.write(c.key, c.seq, changeText(c))
        }
        w.flush()
        p.seq = Math.max(p.seq, upTo)
        this.stmt.setProgress.run(JSON.stringify(p), w.keysDelta, name)
      })
    this.afterWrite()
  }

  async finishBootstrap(name: string, hook?: ApplyHook<Database>): Promise<ReplicaState> {
    const row = this.write((): ReplicaRow => {
        const r = this.owned(name)
        const p = this.bootstrapping(r)
        if (!p.snapshotDone || p.seq < p.readHead) {
          throw new BadRequestError(
            `the bootstrap of replica "${name}" is not complete (snapshot ${p.snapshotDone ? 'done' : `copied up to key ${JSON.stringify(p.afterKey)}`}, ` +
              `log applied to ${p.seq} of at least ${p.readHead}): finish copying before making it current`,
          )
        }
        if (hook) this.diff(name, r.gen === 0 ? (r.previous_gen ?? 0) : r.gen, p, hook)
        ensureBucketIndex(this.db, p.gen)
        const now = this.clock()
        return this.stmt.swap.get(p.gen, p.epoch, p.seq, now, p.seq, p.seq, now, name) as ReplicaRow
      })
    this.logger.info({ replica: name, gen: row.gen, seq: row.seq, keys: row.keys }, `replica "${name}" is now at seq ${row.seq} (generation ${row.gen})`)
    return toState(row)
  }

  /**
   * Calls the hook with the difference between generation `from` and the new one, walking both in
   * key order a page at a time (the hook writes on this connection, which an open iterator forbids).
   */
  private diff(name: string, from: number, p: BootstrapProgress, hook: ApplyHook<Database>): void {
    const old = new GenCursor(this.stmt.genPage, name, from)
    const cur = new GenCursor(this.stmt.genPage, name, p.gen)
    const ts = this.clock()
    for (;;) {
      const o = old.peek()
      const n = cur.peek()
      if (o === undefined && n === undefined) return
      const order = o === undefined ? 1 : n === undefined ? -1 : compareKeys(o.key, n.key)
      if (order < 0) {
        old.next()
        this.runHook(hook, new StoredChange(p.seq, (o as DataRow).key, 'delete', p.seq, ts, null), 'bootstrap')
        continue
      }
      const row = n as DataRow
      cur.next()
      if (order === 0) old.next()
      if (order > 0 || (o as DataRow).seq !== row.seq) {
        this.runHook(hook, new StoredChange(row.seq, row.key, 'upsert', p.seq, ts, row.data), 'bootstrap')
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
      const n = this.write(() => this.collectStep(name))
      if (n === 0) break
      total += n
      // Short transactions with a turn of the event loop between them: the replicator goes on.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    if (total > 0) this.logger.debug({ replica: name, rows: total }, `replica "${name}": dropped ${total} rows of old generations`)
    return total
  }

  /** Deletes up to GC_CHUNK rows of one generation that is neither current nor being built. */
  private collectStep(name: string): number {
    const r = this.owned(name)
    const keep = [r.gen, progressOf(r)?.gen ?? r.gen, r.previous_gen ?? r.gen]
    const s = this.stmt
    let gen = -1
    for (;;) {
      const next = s.nextRowGen.get(name, gen) as number | undefined
      if (next === undefined) {
        this.digest.dropAllBut(name, keep)
        return 0
      }
      gen = next
      if (!keep.includes(gen)) break
    }
    // Its index first, when no replica of the store uses the generation: deleting rows through it
    // would cost an index write each.
    if (s.genInUse.get(gen, gen, gen) === undefined) {
      dropBucketIndex(this.db, gen)
      this.bucketStatements.delete(gen)
    }
    const last = s.gcBoundary.get(name, gen, GC_CHUNK - 1) as string | undefined
    if (last !== undefined) return s.deleteGenRowsUpTo.run(name, gen, last).changes
    const n = s.deleteGenRows.run(name, gen).changes
    this.digest.dropGen(name, gen)
    return n
  }

  // ── live ──────────────────────────────────────────────────────────────────────────────────────

  /**
   * The hook runs for every change above the checkpoint, in order, including a delete of a key the
   * copy does not hold (the consumer's tables may hold it all the same). A replica without a copy
   * (never bootstrapped, or rebound to another source) is refused: it must bootstrap first.
   */
  async apply(name: string, changes: Change[], upTo: Seq, hook?: ApplyHook<Database>): Promise<ReplicaState> {
    const row = this.write((): ReplicaRow => {
        const r = this.owned(name)
        if (r.gen === 0) {
          // Generation 0 stays empty: "no copy" is what tells a replicator to bootstrap.
          throw new BadRequestError(`replica "${name}" in ${this.location} has no copy yet: bootstrap it before applying changes`)
        }
        // Rows of the current generation are all at or below the checkpoint, so every change above
        // it wins; a delete removes the row outright (no tombstone is needed from here on).
        const w = new GenWriter(this.stmt, this.digest, this.deltas, name, r.gen, false)
        if (hook === undefined) w.writeNewest(changes, r.seq, upTo)
        else {
          for (const c of changes) {
            if (c.seq <= r.seq) continue
            checkUpTo(c, upTo)
            if (w.write(c.key, c.seq, changeText(c))) this.runHook(hook, c, 'apply')
          }
        }
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
    this.uncommitted = []
    let result: T
    try {
      result = this.db.transaction(fn).immediate()
    } catch (error) {
      this.uncommitted = []
      throw translateError(error, this.location)
    }
    for (const u of this.uncommitted) {
      const cached = this.trees.get(u.name)
      if (cached?.gen === u.gen) cached.tree.addPacked(u.packed)
    }
    this.uncommitted = []
    return result
  }

  async close(): Promise<void> {
    for (const name of [...this.claims.keys()]) {
      try {
        await this.release(name)
      } catch (error) {
        this.logger.warn({ replica: name, err: error }, `replica "${name}": could not release the claim`)
      }
    }
    if (this.ownsDb) this.db.close()
  }

  // ── reconciliation ────────────────────────────────────────────────────────────────────────────

  async repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<Database>): Promise<number> {
    const repaired = this.write((): number => {
      const r = this.owned(name)
      checkRepairAt(name, r, at)
      const w = new GenWriter(this.stmt, this.digest, this.deltas, name, r.gen, false)
      const ts = this.clock()
      let n = 0
      for (const fix of fixes) {
        const { seq, text } = repairVersion(fix, r.seq)
        if (!w.replace(fix.key, seq, text)) continue
        n++
        if (hook) this.runHook(hook, new StoredChange(seq, fix.key, text === null ? 'delete' : 'upsert', seq, ts, text), 'repair')
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
      const counts = new Float64Array(2 ** DIGEST_BITS)
      const sums = new Map<number, bigint>()
      let rows = 0
      let staleRows = 0
      let after = ''
      // A page at a time: better-sqlite3 cannot write while an iterator is open on the connection.
      for (;;) {
        const page = this.stmt.rehashPage.all(name, r.gen, after) as Array<{ key: string; seq: number; data: string; hash: Buffer | null; bucket: number | null }>
        for (const row of page) {
          const h = Buffer.from(rowHashHex(row.key, row.seq, row.data), 'hex')
          const bucket = bucketOf(row.key)
          if (row.hash === null || !row.hash.equals(h) || row.bucket !== bucket) {
            this.stmt.setRowHash.run(h, bucket, name, r.gen, row.key)
            staleRows++
          }
          rows++
          counts[bucket]! += 1
          sums.set(bucket, addHash(sums.get(bucket) ?? 0n, bufferToHash(h)))
        }
        const last = page[page.length - 1]
        if (last === undefined) break
        after = last.key
      }
      const stored = new Map(this.digest.leaves(name, r.gen).map((l) => [l.bucket, l]))
      const leaves: DigestLeaf[] = []
      let wrongBuckets = 0
      for (let b = 0; b < counts.length; b++) {
        const count = counts[b]!
        const sum = sums.get(b) ?? 0n
        const held = stored.get(b)
        if ((held?.count ?? 0) !== count || (held?.sum ?? 0n) !== sum) wrongBuckets++
        if (count > 0) leaves.push({ bucket: b, count, sum })
      }
      if (wrongBuckets > 0) {
        this.digest.replace(name, r.gen, leaves)
        this.trees.delete(name)
      }
      if (r.keys !== rows) this.stmt.setKeys.run(rows, name)
      return { rows, staleRows, wrongBuckets }
    })
  }

  async bucketEntries(name: string, buckets: number[]): Promise<BucketList[]> {
    for (const b of buckets) {
      if (!Number.isSafeInteger(b) || b < 0 || b >= 2 ** DIGEST_BITS) throw new BadRequestError(`bucket ${b} is not a leaf bucket (0 to ${2 ** DIGEST_BITS - 1})`)
    }
    return this.db.transaction(() => {
      const r = this.known(name)
      return buckets.map((bucket): BucketList => {
        const entries: DigestEntry[] = []
        let sum = 0n
        for (const row of this.bucketRows(r.gen).all(name, bucket) as Array<{ key: string; seq: number; hash: Buffer | null }>) {
          // A row without a stored hash was written outside tidemark: only a deep run (rehash) sees it.
          if (row.hash === null) continue
          const hash = bufferToHash(row.hash)
          entries.push({ key: row.key, seq: row.seq, hash })
          sum = addHash(sum, hash)
        }
        entries.sort((a, b) => compareKeys(a.key, b.key))
        return { bucket, count: entries.length, sum, entries }
      })
    })()
  }

  /**
   * One bucket's rows of generation `gen`, through that generation's own bucket index (a partial
   * index: the query must name the generation as a literal for SQLite to use it). An index missing
   * (a store of schema 2 whose swap came before the upgrade cannot be: the upgrade builds them; one
   * dropped by hand can) is rebuilt first, or the rows are scanned on a read-only connection.
   */
  private bucketRows(gen: number): Statement {
    let stmt = this.bucketStatements.get(gen)
    if (stmt) return stmt
    const index = bucketIndexName(gen)
    const exists = this.db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?`).get(index) !== undefined
    if (!exists && !this.db.readonly) ensureBucketIndex(this.db, gen)
    const using = exists || !this.db.readonly ? `INDEXED BY ${index}` : ''
    stmt = this.db.prepare(`SELECT key, seq, hash FROM tidemark_replica_rows ${using} WHERE name = ? AND gen = ${gen} AND bucket = ? AND data IS NOT NULL`)
    if (this.bucketStatements.size >= 8) this.bucketStatements.clear()
    this.bucketStatements.set(gen, stmt)
    return stmt
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

  private runHook(hook: ApplyHook<Database>, change: Change, cause: ApplyContext['cause']): void {
    let result: unknown
    try {
      result = hook(change, this.db, { cause })
    } catch (error) {
      throw new ApplyFailedError(change.seq, change.key, error)
    }
    if (isThenable(result)) {
      // It will settle outside the transaction; keep its rejection from going unhandled.
      result.then(undefined, () => {})
      throw new ApplyFailedError(
        change.seq,
        change.key,
        new TypeError('the apply hook returned a promise: it runs inside the SQLite transaction and must be synchronous (no async, no await)'),
      )
    }
  }

  /** The replica's row, when this store instance holds its claim (checked inside every write). */
  private owned(name: string): ReplicaRow {
    const r = this.stmt.replica.get(name) as ReplicaRow | undefined
    if (r === undefined || r.owner_id !== this.ownerId) throw this.lostClaim(name, r)
    return r
  }

  private lostClaim(name: string, r = this.stmt.replica.get(name) as ReplicaRow | undefined): Error {
    if (r === undefined) return new BadRequestError(`no replica "${name}" in ${this.location}: claim it first`)
    if (!this.claims.has(name)) {
      return new ConflictError(`replica "${name}" in ${this.location} is not claimed by this replicator: claim it before writing`)
    }
    const owner = ownerOf(r)
    return new ConflictError(
      `lost the claim on replica "${name}" in ${this.location}` +
        (owner ? `: it is now replicated by ${describeOwner(owner)}` : ': it was released') +
        '; this replicator stops so that only one process writes the replica',
    )
  }

  private known(name: string): ReplicaRow {
    const r = this.stmt.replica.get(name) as ReplicaRow | undefined
    if (r === undefined) throw new BadRequestError(`no replica "${name}" in ${this.location}: list them with \`tidemark status\``)
    return r
  }

  private bootstrapping(r: ReplicaRow): BootstrapProgress {
    const p = progressOf(r)
    if (p === null) throw new BadRequestError(`replica "${r.name}" has no bootstrap in progress: begin one first`)
    return p
  }
}

function prepare(db: Database) {
  const R = 'tidemark_replica_replicas'
  const W = 'tidemark_replica_rows'
  return {
    replica: db.prepare(`SELECT * FROM ${R} WHERE name = ?`),
    replicas: db.prepare(`SELECT * FROM ${R} ORDER BY name`),
    insertReplica: db.prepare(
      `INSERT INTO ${R} (name, feed, source, owner_id, owner_pid, owner_host, owner_expires, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    setOwner: db.prepare(`UPDATE ${R} SET owner_id = ?, owner_pid = ?, owner_host = ?, owner_expires = ? WHERE name = ?`),
    rebind: db.prepare(
      `UPDATE ${R} SET feed = ?, source = ?, epoch = NULL, seq = 0, gen = 0, keys = 0, bootstrap = NULL, bootstrap_keys = 0,
         previous_gen = CASE WHEN gen > 0 THEN gen ELSE previous_gen END,
         source_head = 0, source_head_at = NULL, behind_since = NULL WHERE name = ?`,
    ),
    renew: db.prepare(`UPDATE ${R} SET owner_expires = ? WHERE name = ? AND owner_id = ?`),
    release: db.prepare(
      `UPDATE ${R} SET owner_id = NULL, owner_pid = NULL, owner_host = NULL, owner_expires = NULL WHERE name = ? AND owner_id = ?`,
    ),
    beginProgress: db.prepare(`UPDATE ${R} SET bootstrap = ?, bootstrap_keys = 0 WHERE name = ?`),
    cancelProgress: db.prepare(`UPDATE ${R} SET bootstrap = NULL, bootstrap_keys = 0 WHERE name = ?`),
    setProgress: db.prepare(`UPDATE ${R} SET bootstrap = ?, bootstrap_keys = bootstrap_keys + ? WHERE name = ?`),
    advance: db.prepare(
      `UPDATE ${R} SET seq = ?, keys = keys + ?, applied_at = ?, source_head = max(source_head, ?),
         behind_since = CASE WHEN ? >= source_head THEN NULL ELSE coalesce(behind_since, ?) END
       WHERE name = ? RETURNING *`,
    ),
    swap: db.prepare(
      `UPDATE ${R} SET gen = ?, epoch = ?, seq = ?, keys = bootstrap_keys, bootstrap = NULL, bootstrap_keys = 0, previous_gen = NULL, applied_at = ?, source_head = max(source_head, ?),
         behind_since = CASE WHEN ? >= source_head THEN NULL ELSE coalesce(behind_since, ?) END
       WHERE name = ? RETURNING *`,
    ),
    noteHead: db.prepare(
      `UPDATE ${R} SET source_head = max(source_head, ?), source_head_at = ?,
         behind_since = CASE WHEN max(source_head, ?) > seq THEN coalesce(behind_since, ?) ELSE NULL END
       WHERE name = ? AND owner_id = ?`,
    ),

    rowVersion: db.prepare(`SELECT seq, hash FROM ${W} WHERE name = ? AND gen = ? AND key = ?`),
    rowVersions: db.prepare(`SELECT key, seq, hash FROM ${W} WHERE name = ? AND gen = ? AND key IN (SELECT value FROM json_each(?))`),
    insertRow: db
      .prepare(`INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING key`)
      .pluck(),
    insertFresh: db.prepare(`INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES ${Array(INSERT_BATCH).fill('(:name, :gen, ?, ?, ?, ?, ?)').join(', ')}`),
    upsertRow: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash, bucket = excluded.bucket`,
    ),
    // A key's bucket never changes, so the live upsert leaves the column (and its index) alone:
    // naming it in SET would make SQLite rewrite the bucket index entry of every row it updates,
    // about a fifth of an apply's cost. (A bucket edited by hand is found by a deep run: rehash.)
    upsertRows: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES ${Array(INSERT_BATCH).fill('(?, ?, ?, ?, ?, ?, ?)').join(', ')}
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash`,
    ),
    upsertNewest: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash`,
    ),
    deleteRow: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ? AND key = ?`),

    addKeys: db.prepare(`UPDATE ${R} SET keys = keys + ? WHERE name = ?`),
    setKeys: db.prepare(`UPDATE ${R} SET keys = ? WHERE name = ?`),
    rehashPage: db.prepare(`SELECT key, seq, data, hash, bucket FROM ${W} WHERE name = ? AND gen = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT 1000`),
    setRowHash: db.prepare(`UPDATE ${W} SET hash = ?, bucket = ? WHERE name = ? AND gen = ? AND key = ?`),
    insertRun: db.prepare('INSERT INTO tidemark_replica_runs (name, at, record) VALUES (?, ?, ?)'),
    trimRuns: db.prepare(
      'DELETE FROM tidemark_replica_runs WHERE name = ? AND id NOT IN (SELECT id FROM tidemark_replica_runs WHERE name = ? ORDER BY id DESC LIMIT ?)',
    ),
    runs: db.prepare('SELECT id, record FROM tidemark_replica_runs WHERE name = ? ORDER BY id DESC LIMIT ?'),
    anyRequest: db.prepare('SELECT 1 FROM tidemark_replica_requests WHERE name = ? AND taken_at IS NULL LIMIT 1'),
    insertRequest: db.prepare('INSERT INTO tidemark_replica_requests (name, mode, deep, requested_at) VALUES (?, ?, ?, ?)'),
    takeRequests: db.prepare(
      'UPDATE tidemark_replica_requests SET taken_at = ? WHERE name = ? AND taken_at IS NULL RETURNING id, mode, deep, requested_at',
    ),

    currentRow: db.prepare(`SELECT key, seq, data FROM tidemark_replica_current WHERE name = ? AND key = ?`),
    currentRows: db.prepare(`SELECT key, seq, data FROM tidemark_replica_current WHERE name = ? AND key > ? ORDER BY key LIMIT ?`),
    genPage: db.prepare(`SELECT key, seq, data FROM ${W} WHERE name = ? AND gen = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT ?`),

    genInUse: db.prepare(`SELECT 1 FROM ${R} WHERE gen = ? OR previous_gen = ? OR json_extract(bootstrap, '$.gen') = ?`),
    maxRowGen: db.prepare(`SELECT gen FROM ${W} WHERE name = ? ORDER BY gen DESC LIMIT 1`).pluck(),
    nextRowGen: db.prepare(`SELECT gen FROM ${W} WHERE name = ? AND gen > ? ORDER BY gen LIMIT 1`).pluck(),
    gcBoundary: db.prepare(`SELECT key FROM ${W} WHERE name = ? AND gen = ? ORDER BY key LIMIT 1 OFFSET ?`).pluck(),
    deleteGenRows: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ?`),
    deleteGenRowsUpTo: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ? AND key <= ?`),
  }
}

type Statements = ReturnType<typeof prepare>

/**
 * Writes versions into one generation inside the caller's transaction, higher seq wins, and keeps
 * the digest's changes in memory to record them once per transaction, at `flush`.
 */
class GenWriter {
  /** Change in the number of live rows. */
  keysDelta = 0

  constructor(
    private readonly s: Statements,
    private readonly digest: ReplicaDigest,
    private readonly deltas: DigestDeltas,
    private readonly name: string,
    private readonly gen: number,
    /** Keep deletes as tombstones (while bootstrapping: an older snapshot row must not revive the key). */
    private readonly tombstones: boolean,
  ) {
    // Left over from a transaction that threw.
    deltas.reset()
  }

  /**
   * For snapshot rows, mostly keys the generation does not hold yet: INSERT_BATCH rows per plain
   * INSERT (no conflict clause, nothing returned: a chunk of a snapshot is in key order and after the
   * last one, so its rows are new). A batch that does meet a key already there (a resumed chunk, a
   * key twice) fails whole — SQLite undoes only that statement — and goes again row by row, each
   * row already held through `write`.
   */
  insertAll(rows: StateRow[]): void {
    // The rows' hashes side by side in one buffer: a view per row, no allocation per row.
    const hashes = Buffer.allocUnsafe(rows.length * 16)
    const texts: Array<string | null> = new Array<string | null>(rows.length)
    const held: Array<Buffer | null> = new Array<Buffer | null>(rows.length)
    const buckets = new Int32Array(rows.length)
    const params: unknown[] = []
    const fixed = { name: this.name, gen: this.gen }
    for (let i = 0; i < rows.length; i += INSERT_BATCH) {
      const n = Math.min(INSERT_BATCH, rows.length - i)
      params.length = 0
      for (let j = i; j < i + n; j++) {
        const r = rows[j] as StateRow
        const text = rowText(r)
        let h: Buffer | null = null
        let bucket: number
        if (r instanceof HashedRow) {
          // Hashed by the snapshot prefetcher over this very text (hashed-row.ts).
          h = r.hash
          bucket = r.bucket
        } else {
          if (text !== null) {
            hashes.write(rowHashHex(r.key, r.seq, text), j * 16, 16, 'hex')
            h = hashes.subarray(j * 16, j * 16 + 16)
          }
          bucket = bucketOf(r.key)
        }
        texts[j] = text
        held[j] = h
        buckets[j] = bucket
        params.push(r.key, r.seq, text, h, bucket)
      }
      if (n === INSERT_BATCH && this.tryInsertBatch(fixed, params)) {
        for (let j = i; j < i + n; j++) if (held[j] !== null) this.account(buckets[j] as number, null, held[j] as Buffer)
        continue
      }
      for (let j = i; j < i + n; j++) {
        const r = rows[j] as StateRow
        const h = held[j] as Buffer | null
        const bucket = buckets[j] as number
        if (this.s.insertRow.get(this.name, this.gen, r.key, r.seq, texts[j], h, bucket) !== undefined) {
          if (h !== null) this.account(bucket, null, h)
        } else {
          this.write(r.key, r.seq, texts[j] as string | null, h, bucket)
        }
      }
    }
  }

  /** One batch as new rows; false (nothing written) when a key of it is already there. */
  private tryInsertBatch(fixed: { name: string; gen: number }, params: unknown[]): boolean {
    try {
      this.s.insertFresh.run(fixed, params)
      return true
    } catch (error) {
      if ((error as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false
      throw error
    }
  }

  /**
   * What `write` of every change above `above`, in order, comes to — for a live apply without a
   * hook, where nothing looks at the versions in between: only each key's newest version reaches
   * the rows, and the digest moves from the version held to it (the versions in between would be
   * added and taken away again, which cancels out exactly in a sum with a count). So the versions
   * held are read in one statement for up to READ_BATCH keys and the newer ones written
   * INSERT_BATCH rows per statement, instead of two statements per change.
   */
  writeNewest(changes: readonly Change[], above: Seq, upTo: Seq): void {
    const newest = new Map<string, Change>()
    for (const c of changes) {
      if (c.seq <= above) continue
      checkUpTo(c, upTo)
      changeText(c) // refuses an unknown op or an upsert without data, whichever version wins
      const prev = newest.get(c.key)
      if (prev === undefined || prev.seq < c.seq) newest.set(c.key, c)
    }
    const held = new Map<string, { seq: number; hash: Buffer | null }>()
    const keys = [...newest.keys()]
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const rows = this.s.rowVersions.all(this.name, this.gen, JSON.stringify(keys.slice(i, i + READ_BATCH))) as Array<{ key: string; seq: number; hash: Buffer | null }>
      for (const r of rows) held.set(r.key, r)
    }
    const params: unknown[] = []
    for (const [key, c] of newest) {
      const cur = held.get(key)
      if (cur !== undefined && cur.seq >= c.seq) continue
      const text = changeText(c)
      const h = text === null ? null : Buffer.from(rowHashHex(key, c.seq, text), 'hex')
      const bucket = bucketOf(key)
      if (text === null && !this.tombstones) {
        if (cur !== undefined) this.s.deleteRow.run(this.name, this.gen, key)
      } else {
        params.push(this.name, this.gen, key, c.seq, text, h, bucket)
        if (params.length === INSERT_BATCH * 7) {
          this.s.upsertRows.run(params)
          params.length = 0
        }
      }
      const old = cur?.hash ?? null
      if (old !== null || h !== null) this.account(bucket, old, h)
    }
    for (let j = 0; j < params.length; j += 7) this.s.upsertNewest.run(params.slice(j, j + 7))
  }

  /** Writes the version when it is newer than the one held (or there is none); says whether it did. */
  write(
    key: string,
    seq: Seq,
    text: string | null,
    h: Buffer | null = text === null ? null : Buffer.from(rowHashHex(key, seq, text), 'hex'),
    bucket = bucketOf(key),
  ): boolean {
    const cur = this.s.rowVersion.get(this.name, this.gen, key) as { seq: number; hash: Buffer | null } | undefined
    if (cur !== undefined && cur.seq >= seq) return false
    this.put(key, seq, text, h, bucket, cur)
    return true
  }

  /**
   * Replaces the version held, whatever its seq (a repair), with the digest; says whether anything
   * changed.
   */
  replace(key: string, seq: Seq, text: string | null): boolean {
    const cur = this.s.rowVersion.get(this.name, this.gen, key) as { seq: number; hash: Buffer | null } | undefined
    const h = text === null ? null : Buffer.from(rowHashHex(key, seq, text), 'hex')
    if (cur === undefined && h === null) return false
    if (cur !== undefined && cur.seq === seq && cur.hash !== null && h !== null && cur.hash.equals(h)) return false
    this.put(key, seq, text, h, bucketOf(key), cur)
    return true
  }

  private put(key: string, seq: Seq, text: string | null, h: Buffer | null, bucket: number, cur: { hash: Buffer | null } | undefined): void {
    if (text === null && !this.tombstones) {
      if (cur !== undefined) this.s.deleteRow.run(this.name, this.gen, key)
    } else {
      this.s.upsertRow.run(this.name, this.gen, key, seq, text, h, bucket)
    }
    const old = cur?.hash ?? null
    if (old !== null || h !== null) this.account(bucket, old, h)
  }

  private account(bucket: number, old: Buffer | null, next: Buffer | null): void {
    if (old !== null) {
      this.deltas.remove(bucket, old, 0)
      this.keysDelta -= 1
    }
    if (next !== null) {
      this.deltas.add(bucket, next, 0)
      this.keysDelta += 1
    }
  }

  flush(): void {
    this.digest.append(this.name, this.gen, this.deltas)
  }
}

/** Reads one generation's live rows in key order, a page at a time. */
class GenCursor {
  private page: DataRow[] = []
  private i = 0
  private after = ''
  private done = false

  constructor(
    private readonly stmt: Statement,
    private readonly name: string,
    private readonly gen: number,
  ) {}

  peek(): DataRow | undefined {
    if (this.i < this.page.length) return this.page[this.i]
    if (this.done) return undefined
    this.page = this.stmt.all(this.name, this.gen, this.after, DIFF_PAGE) as DataRow[]
    this.i = 0
    if (this.page.length < DIFF_PAGE) this.done = true
    const last = this.page[this.page.length - 1]
    if (last !== undefined) this.after = last.key
    return this.page[0]
  }

  next(): void {
    this.i++
  }
}






function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}



