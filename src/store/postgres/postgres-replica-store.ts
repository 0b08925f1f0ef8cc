import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type pg from 'pg'
import type { DigestTree } from '../../digest/digest-tree.js'
import { addHash, bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
import { ApplyFailedError, StoreUnavailableError } from '../../errors.js'
import { StoredRow } from '../../protocol/encoded.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { BucketList, Change, DigestEntry, Seq, StateRow } from '../../protocol/types.js'
import type { ReconcileMode, ReconcileRun, RunRequest } from '../../reconcile/run.js'
import type { ApplyContext, ApplyHook, BootstrapProgress, ClaimOptions, RehashReport, RepairFix, ReplicaState, ReplicaStore } from '../replica-store.js'
import { DEFAULT_LEASE_MS } from '../replica-lease.js'
import { silentLogger, type DigestLeaf, type Logger } from '../store.js'
import { createPool, inTransaction, redactUrl, translatePgError } from './connection.js'
import { copyable, copyIntoGeneration } from './replica-copy.js'
import { HeldSums, sumDigest, type DigestSums } from './replica-digest-sums.js'
import { dropBucketIndexes, ensureBucketIndex, migrateReplica } from './replica-schema.js'
import { changeText, checkRepairAt, toState, type ReplicaRow } from '../replica-row.js'
import { claimRequest, decideClaim, holds, logNewReplica, lostClaim, releaseAll, unknownReplica } from '../replica/claim.js'
import { DigestTreeCache } from '../replica/digest-tree-cache.js'
import { GenerationDiff, type DataRow } from '../replica/generation-diff.js'
import { bootstrapping, checkBuckets, checkComplete, checkHasCopy, chunkWritten, diffBase, keptGenerations, newProgress, nextGeneration } from '../replica/generations.js'
import { changesAbove } from '../replica/version-writer.js'
import { bucketLists, type BucketRow } from '../replica/bucket-lists.js'
import { collectStep } from './replica-gc.js'
import { PostgresGenWriter } from './replica-gen-writer.js'
import { SQL } from './replica-sql.js'
import { runHook } from './replica-hook.js'
import { rehashGeneration } from './replica-rehash.js'
import { insertRequest, insertRun, latestRuns, takeRequests } from './replica-runs.js'


export interface PostgresReplicaStoreOptions {
  logger?: Logger
  /** The clock, ms since the Unix epoch (leases, lag bookkeeping, synthetic changes). */
  clock?: () => number
  /** Connections in the store's own pool (default 4; `attach` uses the consumer's pool). */
  poolSize?: number
}

const R = 'tidemark.replica_replicas'
const W = 'tidemark.replica_rows'
const D = 'tidemark.replica_digest'

/**
 * The replica side of the store port on PostgreSQL: the consumer's copy of one or more feeds in
 * its own database. Every write is one transaction on one pooled connection; `apply` runs the
 * projection hook on that very connection (the hook's `tx`), so the consumer's tables, the copy,
 * the digest and the checkpoint commit together or not at all. The rules are the port's
 * (src/store/replica-store.ts), decided by the modules of src/store/replica/.
 */
export class PostgresReplicaStore implements ReplicaStore<pg.ClientBase> {
  readonly location: string
  private readonly logger: Logger
  private readonly clock: () => number
  private readonly ownerId = randomBytes(8).toString('hex')
  private readonly host = hostname()
  private readonly claims = new Map<string, number>()
  /** The digest of each generation bootstrapped through here, summed as it is written (HeldSums). */
  private readonly bootstrapSums = new HeldSums()
  /** The current copy's digest tree per replica claimed here; all are dropped when a write fails (it may have committed or not). */
  private readonly trees = new DigestTreeCache()
  /** Generations (`gen NUL name`) whose bucket index this instance has seen valid. */
  private readonly bucketIndexes = new Set<string>()

  private constructor(
    private readonly pool: pg.Pool,
    location: string,
    private readonly ownsPool: boolean,
    options: PostgresReplicaStoreOptions,
  ) {
    this.location = location
    this.logger = options.logger ?? silentLogger
    this.clock = options.clock ?? Date.now
  }

  static async open(url: string, options: PostgresReplicaStoreOptions = {}): Promise<PostgresReplicaStore> {
    const pool = createPool(url, { max: options.poolSize ?? 4 })
    try {
      await PostgresReplicaStore.migrate(pool)
    } catch (error) {
      await pool.end().catch(() => {})
      throw translatePgError(error, redactUrl(url))
    }
    return new PostgresReplicaStore(pool, redactUrl(url), true, options)
  }

  /** Uses the consumer's own pool; `close()` releases the claims and leaves the pool open. */
  static async attach(pool: pg.Pool, options: Omit<PostgresReplicaStoreOptions, 'poolSize'> = {}): Promise<PostgresReplicaStore> {
    await PostgresReplicaStore.migrate(pool)
    const o = pool.options
    return new PostgresReplicaStore(pool, `postgres://${o.user ?? ''}@${o.host ?? 'localhost'}:${o.port ?? 5432}/${o.database ?? ''}`, false, options)
  }

  private static async migrate(pool: pg.Pool): Promise<void> {
    const client = await pool.connect()
    try {
      await migrateReplica(client)
    } finally {
      client.release()
    }
  }

  // ── claims ────────────────────────────────────────────────────────────────────────────────────

  async claim(name: string, feed: string, source: string, options: ClaimOptions = {}): Promise<ReplicaState> {
    const req = claimRequest(name, feed, source, options)
    const row = await this.write(async (client): Promise<ReplicaRow> => {
      const now = this.clock()
      const me = [this.ownerId, process.pid, this.host, now + req.leaseMs]
      const r = await this.row(client, name, true)
      if (r === undefined) {
        await client.query(SQL.insertReplica, [name, feed, source, ...me, now])
        logNewReplica(this.logger, req)
        return (await this.row(client, name)) as ReplicaRow
      }
      if (decideClaim(r, req, { self: this.ownerId, host: this.host, now, location: this.location, logger: this.logger }).rebind) {
        await client.query(SQL.rebind, [feed, source, name])
      }
      await client.query(SQL.setOwner, [...me, name])
      return (await this.row(client, name)) as ReplicaRow
    })
    this.claims.set(name, req.leaseMs)
    this.bootstrapSums.drop(name)
    this.trees.drop(name)
    return toState(row)
  }

  async renew(name: string): Promise<void> {
    const leaseMs = this.claims.get(name) ?? DEFAULT_LEASE_MS
    const n = await this.guard(() => this.pool.query(SQL.renew, [this.clock() + leaseMs, name, this.ownerId]))
    if (n.rowCount === 0) throw await this.lostClaim(name)
  }

  async release(name: string): Promise<void> {
    await this.guard(() => this.pool.query(SQL.release, [name, this.ownerId]))
    this.claims.delete(name)
    this.bootstrapSums.drop(name)
    this.trees.drop(name)
  }

  // ── reading ───────────────────────────────────────────────────────────────────────────────────

  async state(name: string): Promise<ReplicaState | null> {
    const r = await this.guard(() => this.row(this.pool, name))
    return r === undefined ? null : toState(r)
  }

  async list(): Promise<ReplicaState[]> {
    return (await this.guard(() => this.pool.query<ReplicaRow>(`SELECT * FROM ${R} ORDER BY name`))).rows.map(toState)
  }

  async get(name: string, key: string): Promise<StateRow | undefined> {
    const { rows } = await this.guard(() => this.pool.query<DataRow>(SQL.currentRow, [name, key]))
    const r = rows[0]
    if (r === undefined) {
      await this.known(name)
      return undefined
    }
    return new StoredRow(r.key, r.seq, r.data)
  }

  async rows(name: string, after: string | null, limit: number): Promise<StateRow[]> {
    const { rows } = await this.guard(() => this.pool.query<DataRow>(SQL.currentRows, [name, after ?? '', limit]))
    if (rows.length === 0) await this.known(name)
    return rows.map((r) => new StoredRow(r.key, r.seq, r.data))
  }

  async digestLeaves(name: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }> {
    const { seq, leaves } = await this.readLeaves(name)
    return { seq, leaves }
  }

  private readLeaves(name: string): Promise<{ seq: Seq; gen: number; leaves: DigestLeaf[] }> {
    return this.guard(() =>
      inTransaction(
        this.pool,
        async (client) => {
          const r = await this.known(name, client)
          const { rows } = await client.query<{ bucket: number; count: number; sum: Buffer }>(SQL.leaves, [name, r.gen])
          return { seq: r.seq, gen: r.gen, leaves: rows.map((l) => ({ bucket: l.bucket, count: l.count, sum: bufferToHash(l.sum) })) }
        },
        'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      ),
    )
  }

  async digestTree(name: string): Promise<{ seq: Seq; tree: DigestTree }> {
    return this.trees.get(
      name,
      () => this.claims.has(name),
      () => this.guard(() => this.known(name)),
      () => this.readLeaves(name),
    )
  }

  // ── bootstrap ─────────────────────────────────────────────────────────────────────────────────

  async beginBootstrap(name: string, epoch: string, s0: Seq): Promise<BootstrapProgress> {
    const progress = await this.bootstrapWrite(name, async (client) => {
      const r = await this.owned(client, name)
      const { rows } = await client.query<{ gen: number | null }>(`SELECT max(gen) AS gen FROM ${W} WHERE name = $1`, [name])
      const gen = nextGeneration(r, rows[0]?.gen)
      await client.query(`DELETE FROM ${W} WHERE name = $1 AND gen = $2`, [name, gen])
      await client.query(`DELETE FROM ${D} WHERE name = $1 AND gen = $2`, [name, gen])
      const progress = newProgress(gen, epoch, s0, this.clock())
      await client.query(`UPDATE ${R} SET bootstrap = $1, bootstrap_keys = 0 WHERE name = $2`, [JSON.stringify(progress), name])
      return progress
    })
    this.bootstrapSums.begin(name, progress.gen)
    return progress
  }

  /**
   * A chunk of snapshot rows, in key order above every key the generation holds (the usual case),
   * goes in with one binary COPY; any other (a key already there, keys out of order) through the
   * version comparison of GenWriter.
   */
  async writeSnapshotChunk(name: string, rows: StateRow[], progress: { afterKey: string | null; readHead: Seq; done: boolean }): Promise<void> {
    await this.bootstrapWrite(name, async (client, sums) => {
      const r = await this.owned(client, name)
      const p = bootstrapping(r)
      let keysDelta: number
      if (await copyable(client, name, p.gen, rows)) {
        keysDelta = await copyIntoGeneration(client, name, p.gen, rows, sums)
      } else {
        const w = new PostgresGenWriter(client, name, p.gen, true)
        await w.insertAll(rows)
        await w.flush()
        sums?.merge(w.deltas, w.keysDelta)
        keysDelta = w.keysDelta
      }
      chunkWritten(p, progress)
      await client.query(SQL.setProgress, [JSON.stringify(p), keysDelta, name])
      return p.gen
    })
  }

  async applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void> {
    await this.bootstrapWrite(name, async (client, sums) => {
      const r = await this.owned(client, name)
      const p = bootstrapping(r)
      const w = new PostgresGenWriter(client, name, p.gen, true)
      const fresh = changesAbove(changes, p.seq, upTo)
      await w.load(fresh.map((c) => c.key))
      for (const c of fresh) w.write(c.key, c.seq, changeText(c))
      await w.flush()
      sums?.merge(w.deltas, w.keysDelta)
      p.seq = Math.max(p.seq, upTo)
      await client.query(SQL.setProgress, [JSON.stringify(p), w.keysDelta, name])
      return p.gen
    })
  }

  /**
   * One write to the generation being bootstrapped. `sums` (the generation's digest so far, when
   * this instance holds it) is given to `fn` to add the write's rows to, and kept afterwards only
   * when the write committed for that generation with no other write to the replica overlapping it.
   */
  private async bootstrapWrite<T extends number | BootstrapProgress>(
    name: string,
    fn: (client: pg.PoolClient, sums: DigestSums | undefined) => Promise<T>,
  ): Promise<T> {
    const taken = this.bootstrapSums.take(name)
    const result = await this.write((client) => fn(client, taken.sums))
    this.bootstrapSums.keep(name, taken, typeof result === 'number' ? result : result.gen)
    return result
  }

  async finishBootstrap(name: string, hook?: ApplyHook<pg.ClientBase>): Promise<ReplicaState> {
    const held = this.bootstrapSums.take(name).sums
    const row = await this.write(async (client) => {
      const r = await this.owned(client, name)
      const p = bootstrapping(r)
      checkComplete(name, p)
      if (hook) await this.diff(client, name, diffBase(r), p, hook)
      const sums = held !== undefined && held.gen === p.gen && held.keys === Number(r.bootstrap_keys) ? held : await sumDigest(client, name, p.gen)
      await sums.write(client, name)
      const now = this.clock()
      const { rows } = await client.query<ReplicaRow>(SQL.swap, [p.gen, p.epoch, p.seq, now, name])
      return rows[0] as ReplicaRow
    })
    this.logger.info({ replica: name, gen: row.gen, seq: row.seq, keys: row.keys }, `replica "${name}" is now at seq ${row.seq} (generation ${row.gen})`)
    return toState(row)
  }

  /** The hook sees the difference between generation `from` and the new one (GenerationDiff). */
  private async diff(client: pg.ClientBase, name: string, from: number, p: BootstrapProgress, hook: ApplyHook<pg.ClientBase>): Promise<void> {
    const diff = new GenerationDiff(from, p.gen, p.seq, this.clock())
    for (let want = diff.wanted(); ; want = diff.wanted()) {
      if (want !== null) {
        const page = await client.query<DataRow>(SQL.genPage, [name, want.gen, want.after, want.limit])
        diff.give(page.rows)
        continue
      }
      const change = diff.step()
      if (change === undefined) return
      if (change !== null) await runHook(hook, change, client, 'bootstrap')
    }
  }

  async cancelBootstrap(name: string): Promise<void> {
    this.bootstrapSums.drop(name)
    await this.write(async (client) => {
      await this.owned(client, name)
      await client.query(`UPDATE ${R} SET bootstrap = NULL, bootstrap_keys = 0 WHERE name = $1`, [name])
    })
  }

  async collectGarbage(name: string): Promise<number> {
    // First the current generation's bucket index, which a bootstrap's swap leaves to be built here.
    const { gen: current } = await this.guard(() => this.known(name))
    if (current > 0) await this.bucketIndex(name, current)
    let total = 0
    let kept: number[] | undefined
    for (;;) {
      const n = await this.write(async (client) => {
        const keep = keptGenerations(await this.owned(client, name))
        const deleted = await collectStep(client, name, keep)
        if (deleted === 0) kept = keep
        return deleted
      })
      if (n === 0) break
      total += n
    }
    if (kept !== undefined) await this.guard(() => dropBucketIndexes(this.pool, name, kept as number[]))
    // Statistics for the planner after a bootstrap (the replicator collects garbage right after
    // each): a copied generation has none until autovacuum comes by, and the consumer's queries on
    // replica_current, reconciliation and deletes plan with them.
    await this.guard(() => this.pool.query(`ANALYZE ${W}`))
    return total
  }

  // ── live ──────────────────────────────────────────────────────────────────────────────────────

  async apply(name: string, changes: Change[], upTo: Seq, hook?: ApplyHook<pg.ClientBase>): Promise<ReplicaState> {
    const row = await this.write(async (client) => {
      const r = await this.owned(client, name)
      checkHasCopy(name, this.location, r)
      const w = new PostgresGenWriter(client, name, r.gen, false)
      const fresh = changesAbove(changes, r.seq, upTo)
      await w.load(fresh.map((c) => c.key))
      for (const c of fresh) if (w.write(c.key, c.seq, changeText(c)) && hook) await runHook(hook, c, client, 'apply')
      await w.flush()
      this.stageTree(name, w)
      const seq = Math.max(r.seq, upTo)
      const now = this.clock()
      const { rows } = await client.query<ReplicaRow>(SQL.advance, [seq, w.keysDelta, seq > r.seq ? now : r.applied_at, now, name])
      return rows[0] as ReplicaRow
    })
    return toState(row)
  }

  async noteSourceHead(name: string, head: Seq): Promise<void> {
    const now = this.clock()
    const n = await this.guard(() => this.pool.query(SQL.noteHead, [head, now, name, this.ownerId]))
    if (n.rowCount === 0) throw await this.lostClaim(name)
  }

  async close(): Promise<void> {
    await releaseAll(this.claims.keys(), (name) => this.release(name), this.logger)
    if (this.ownsPool) await this.pool.end()
  }

  // ── reconciliation ────────────────────────────────────────────────────────────────────────────

  async repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<pg.ClientBase>): Promise<number> {
    return this.write(async (client) => {
      const r = await this.owned(client, name)
      checkRepairAt(name, r, at)
      const w = new PostgresGenWriter(client, name, r.gen, false)
      await w.load(fixes.map((f) => f.key))
      const ts = this.clock()
      let n = 0
      for (const fix of fixes) {
        const change = w.repair(fix, r.seq, ts)
        if (change !== null && ++n > 0 && hook) await runHook(hook, change, client, 'repair')
      }
      await w.flush()
      this.stageTree(name, w)
      if (w.keysDelta !== 0) await client.query(`UPDATE ${R} SET keys = keys + $1 WHERE name = $2`, [w.keysDelta, name])
      return n
    })
  }

  async rehash(name: string): Promise<RehashReport> {
    return this.write(async (client) => {
      const r = await this.owned(client, name)
      const report = await rehashGeneration(client, name, r.gen, r.keys)
      if (report.wrongBuckets > 0) this.trees.drop(name)
      return report
    })
  }

  async bucketEntries(name: string, buckets: number[]): Promise<BucketList[]> {
    checkBuckets(buckets)
    return this.guard(() =>
      inTransaction(
        this.pool,
        async (client) => {
          const r = await this.known(name, client)
          // The bucket index is missing only between a bootstrap's swap and the replicator building
          // it (or after a crash in between): build it in the background and read without it
          // meanwhile rather than wait, since a concurrent build waits for every older transaction
          // to end (this one included).
          if (r.gen > 0 && !this.bucketIndexes.has(`${r.gen}\u0000${name}`)) {
            this.bucketIndex(name, r.gen).catch((error: unknown) =>
              this.logger.warn({ replica: name, err: error }, `replica "${name}": building its bucket index failed: ${String(error)}`),
            )
          }
          const { rows } = await client.query<BucketRow>(SQL.bucketRows, [name, r.gen, buckets])
          return bucketLists(buckets, rows)
        },
        'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      ),
    )
  }

  /** Makes sure generation `gen` of `name` has its bucket index (see ensureBucketIndex). */
  private async bucketIndex(name: string, gen: number): Promise<void> {
    const id = `${gen}\u0000${name}`
    if (this.bucketIndexes.has(id)) return
    if (await this.guard(() => ensureBucketIndex(this.pool, name, gen))) this.bucketIndexes.add(id)
  }

  async recordRun(name: string, run: ReconcileRun): Promise<number> {
    return this.write(async (client) => (await this.known(name, client), insertRun(client, name, run)))
  }

  async runs(name: string, limit = 10): Promise<ReconcileRun[]> {
    return this.guard(() => latestRuns(this.pool, name, limit))
  }

  async requestRun(name: string, request: { mode: ReconcileMode; deep: boolean }): Promise<number> {
    return this.write(async (client) => (await this.known(name, client), insertRequest(client, name, request, this.clock())))
  }

  async takeRunRequests(name: string): Promise<RunRequest[]> {
    return this.guard(() => takeRequests(this.pool, name, this.clock()))
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────────

  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.trees.writeBegan()
    try {
      const result = await this.guard(() => inTransaction(this.pool, fn))
      this.trees.writeEnded('committed')
      return result
    } catch (error) {
      this.trees.writeEnded('unknown')
      throw error
    }
  }

  /** Once the write commits, its digest deltas go into the kept tree of its generation, if one is kept. */
  private stageTree(name: string, w: PostgresGenWriter): void {
    this.trees.stage(name, w.gen, (tree) => {
      for (const [bucket, d] of w.deltas) {
        tree.add(bucket, d.count, d.sum)
        tree.subtract(bucket, 0, d.neg)
      }
    })
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (error) {
      throw translatePgError(error, this.location)
    }
  }

  private async row(db: pg.Pool | pg.ClientBase, name: string, lock = false): Promise<ReplicaRow | undefined> {
    return (await db.query<ReplicaRow>(`SELECT * FROM ${R} WHERE name = $1${lock ? ' FOR UPDATE' : ''}`, [name])).rows[0]
  }

  /** The replica's row, locked, when this store instance holds its claim. */
  private async owned(client: pg.ClientBase, name: string): Promise<ReplicaRow> {
    const r = await this.row(client, name, true)
    if (!holds(r, this.ownerId)) throw await this.lostClaim(name, r)
    return r
  }

  private async lostClaim(name: string, known?: ReplicaRow): Promise<Error> {
    return lostClaim(name, this.location, known ?? (await this.row(this.pool, name)), this.claims.has(name))
  }

  private async known(name: string, db: pg.Pool | pg.ClientBase = this.pool): Promise<ReplicaRow> {
    const r = await this.row(db, name)
    if (r === undefined) throw unknownReplica(name, this.location)
    return r
  }
}
