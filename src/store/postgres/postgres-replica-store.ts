import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type pg from 'pg'
import { DigestTree } from '../../digest/digest-tree.js'
import { applyDelta, type BucketDelta } from '../../digest/fold.js'
import { addHash, bucketOf, bufferToHash, DIGEST_BITS, hashToBuffer, rowHash } from '../../digest/row-hash.js'
import { ApplyFailedError, BadRequestError, ConflictError, StoreUnavailableError } from '../../errors.js'
import { StoredChange, StoredRow } from '../../protocol/encoded.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { BucketList, Change, DigestEntry, Seq, StateRow } from '../../protocol/types.js'
import type { ReconcileMode, ReconcileRun, RunRequest } from '../../reconcile/run.js'
import type { ApplyContext, ApplyHook, BootstrapProgress, ClaimOptions, RehashReport, RepairFix, ReplicaState, ReplicaStore } from '../replica-store.js'
import { checkLease, DEFAULT_LEASE_MS, describeOwner } from '../replica-lease.js'
import { silentLogger, type DigestLeaf, type Logger } from '../store.js'
import { createPool, inTransaction, redactUrl, translatePgError } from './connection.js'
import { copyIntoGeneration } from './replica-copy.js'
import { DigestSums } from './replica-digest-sums.js'
import { dropBucketIndexes, ensureBucketIndex, migrateReplica } from './replica-schema.js'
import { changeText, checkRepairAt, checkReplicaName, checkUpTo, ownerOf, progressOf, repairVersion, rowText, toState, type ReplicaRow } from '../replica-row.js'

const DIFF_PAGE = 1000
const GC_CHUNK = 10_000
/** Reconciliation runs kept per replica. */
const RUNS_KEPT = 100

export interface PostgresReplicaStoreOptions {
  logger?: Logger
  /** The clock, ms since the Unix epoch (leases, lag bookkeeping, synthetic changes). */
  clock?: () => number
  /** Connections in the store's own pool (default 4; `attach` uses the consumer's pool). */
  poolSize?: number
}


interface DataRow {
  key: string
  seq: number
  data: string
}

const R = 'tidemark.replica_replicas'
const W = 'tidemark.replica_rows'
const D = 'tidemark.replica_digest'

/**
 * The replica side of the store port on PostgreSQL: the consumer's copy of one or more feeds in
 * its own database. Every write is one transaction on one pooled connection; `apply` runs the
 * projection hook on that very connection (the hook's `tx`), so the consumer's tables, the copy,
 * the digest and the checkpoint commit together or not at all. The semantics are the SQLite
 * replica store's (src/store/sqlite/sqlite-replica-store.ts), which documents them in full.
 */
export class PostgresReplicaStore implements ReplicaStore<pg.ClientBase> {
  readonly location: string
  private readonly logger: Logger
  private readonly clock: () => number
  private readonly ownerId = randomBytes(8).toString('hex')
  private readonly host = hostname()
  private readonly claims = new Map<string, number>()
  /**
   * Per replica bootstrapping through this instance: the new generation's digest so far, trusted
   * only while every write to the generation since beginBootstrap went through here and succeeded
   * (dropped on any failure, claim or overlap; finishBootstrap then sums the stored hashes).
   */
  private readonly bootstrapSums = new Map<string, DigestSums>()
  private readonly bootstrapWrites = new Map<string, number>()
  /**
   * The current copy's digest tree per replica this instance has claimed, as the SQLite replica
   * store keeps it: only the claim holder writes, so adding each committed write's deltas keeps it
   * exact. All are dropped when any write fails (it may have committed or not) and rebuilt from the
   * leaves when next asked for.
   */
  private readonly trees = new Map<string, { gen: number; tree: DigestTree }>()
  /** Generations (`gen NUL name`) whose bucket index this instance has seen valid. */
  private readonly bucketIndexes = new Set<string>()
  /** Writes begun and under way: a tree read from the database is kept only if none overlapped the read. */
  private writesBegun = 0
  private writesInFlight = 0

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
    checkReplicaName(name)
    const { force = false, leaseMs = DEFAULT_LEASE_MS } = options
    if (!Number.isSafeInteger(leaseMs) || leaseMs < 1) throw new BadRequestError(`a lease must last a positive number of ms, got ${leaseMs}`)
    const row = await this.write(async (client): Promise<ReplicaRow> => {
      const now = this.clock()
      const me = [this.ownerId, process.pid, this.host, now + leaseMs]
      const r = await this.row(client, name, true)
      if (r === undefined) {
        await client.query(
          `INSERT INTO ${R} (name, feed, source, owner_id, owner_pid, owner_host, owner_expires, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [name, feed, source, ...me, now],
        )
        this.logger.info({ replica: name, feed, source }, `new replica "${name}" of feed "${feed}" at ${source}`)
        return (await this.row(client, name)) as ReplicaRow
      }
      const previous = ownerOf(r)
      const lease = checkLease(previous, this.ownerId, now, this.host)
      if (lease.holder !== null) {
        throw new ConflictError(`replica "${name}" in ${this.location} is being replicated by ${describeOwner(lease.holder)}: stop it first`)
      }
      if (r.feed !== feed || r.source !== source) {
        const bound = `feed "${r.feed}" from ${r.source}`
        if (!force) {
          throw new ConflictError(
            `replica "${name}" in ${this.location} copies ${bound}, not feed "${feed}" from ${source}: ` +
              'use another replica name, or force the claim to rebind it (it will re-bootstrap)',
          )
        }
        await client.query(
          `UPDATE ${R} SET feed = $1, source = $2, epoch = NULL, seq = 0, gen = 0, keys = 0, bootstrap = NULL, bootstrap_keys = 0,
             previous_gen = CASE WHEN gen > 0 THEN gen ELSE previous_gen END,
             source_head = 0, source_head_at = NULL, behind_since = NULL WHERE name = $3`,
          [feed, source, name],
        )
        this.logger.warn({ replica: name, feed, source }, `replica "${name}" rebound from ${bound} to feed "${feed}" from ${source}: it will re-bootstrap`)
      }
      if (lease.takeover !== null && previous !== null) {
        this.logger.warn(
          { replica: name, pid: previous.pid, host: previous.host, reason: lease.takeover },
          `replica "${name}": taking over from pid ${previous.pid} on host ${previous.host}`,
        )
      }
      await client.query(`UPDATE ${R} SET owner_id = $1, owner_pid = $2, owner_host = $3, owner_expires = $4 WHERE name = $5`, [...me, name])
      return (await this.row(client, name)) as ReplicaRow
    })
    this.claims.set(name, leaseMs)
    this.bootstrapSums.delete(name)
    this.trees.delete(name)
    return toState(row)
  }

  async renew(name: string): Promise<void> {
    const leaseMs = this.claims.get(name) ?? DEFAULT_LEASE_MS
    const n = await this.guard(() => this.pool.query(`UPDATE ${R} SET owner_expires = $1 WHERE name = $2 AND owner_id = $3`, [this.clock() + leaseMs, name, this.ownerId]))
    if (n.rowCount === 0) throw await this.lostClaim(name)
  }

  async release(name: string): Promise<void> {
    await this.guard(() =>
      this.pool.query(`UPDATE ${R} SET owner_id = NULL, owner_pid = NULL, owner_host = NULL, owner_expires = NULL WHERE name = $1 AND owner_id = $2`, [
        name,
        this.ownerId,
      ]),
    )
    this.claims.delete(name)
    this.bootstrapSums.delete(name)
    this.trees.delete(name)
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
    const { rows } = await this.guard(() =>
      this.pool.query<DataRow>('SELECT key, seq, data FROM tidemark.replica_current WHERE name = $1 AND key = $2', [name, key]),
    )
    const r = rows[0]
    if (r === undefined) {
      await this.known(name)
      return undefined
    }
    return new StoredRow(r.key, r.seq, r.data)
  }

  async rows(name: string, after: string | null, limit: number): Promise<StateRow[]> {
    const { rows } = await this.guard(() =>
      this.pool.query<DataRow>('SELECT key, seq, data FROM tidemark.replica_current WHERE name = $1 AND key > $2 ORDER BY key LIMIT $3', [
        name,
        after ?? '',
        limit,
      ]),
    )
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
          const { rows } = await client.query<{ bucket: number; count: number; sum: Buffer }>(
            `SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2 AND count > 0 ORDER BY bucket`,
            [name, r.gen],
          )
          return { seq: r.seq, gen: r.gen, leaves: rows.map((l) => ({ bucket: l.bucket, count: l.count, sum: bufferToHash(l.sum) })) }
        },
        'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      ),
    )
  }

  /**
   * Kept in memory while this instance holds the claim (it alone writes the replica then), else
   * built from the leaves on each call (another process may write the replica between two calls).
   */
  async digestTree(name: string): Promise<{ seq: Seq; tree: DigestTree }> {
    const quiet = this.writesInFlight === 0
    const begun = this.writesBegun
    const unchanged = (): boolean => quiet && this.writesInFlight === 0 && this.writesBegun === begun && this.claims.has(name)
    const cached = this.trees.get(name)
    if (cached !== undefined) {
      const r = await this.guard(() => this.known(name))
      if (unchanged() && this.trees.get(name) === cached && r.gen === cached.gen) return { seq: r.seq, tree: cached.tree }
    }
    const { seq, gen, leaves } = await this.readLeaves(name)
    const tree = new DigestTree(leaves)
    if (unchanged()) this.trees.set(name, { gen, tree })
    return { seq, tree }
  }

  /** Adds a committed write's digest deltas to the kept tree of generation `gen`, if one is kept. */
  private addToTree(name: string, gen: number, deltas: Map<number, BucketDelta>): void {
    const kept = this.trees.get(name)
    if (kept?.gen !== gen) return
    for (const [bucket, d] of deltas) {
      kept.tree.add(bucket, d.count, d.sum)
      kept.tree.subtract(bucket, 0, d.neg)
    }
  }

  // ── bootstrap ─────────────────────────────────────────────────────────────────────────────────

  async beginBootstrap(name: string, epoch: string, s0: Seq): Promise<BootstrapProgress> {
    const progress = await this.bootstrapWrite(name, async (client) => {
      const r = await this.owned(client, name)
      const { rows } = await client.query<{ gen: number | null }>(`SELECT max(gen) AS gen FROM ${W} WHERE name = $1`, [name])
      const gen = Math.max(r.gen, progressOf(r)?.gen ?? 0, r.previous_gen ?? 0, rows[0]?.gen ?? 0) + 1
      await client.query(`DELETE FROM ${W} WHERE name = $1 AND gen = $2`, [name, gen])
      await client.query(`DELETE FROM ${D} WHERE name = $1 AND gen = $2`, [name, gen])
      const progress: BootstrapProgress = { gen, epoch, s0, afterKey: null, snapshotDone: false, readHead: s0, seq: s0, startedAt: this.clock() }
      await client.query(`UPDATE ${R} SET bootstrap = $1, bootstrap_keys = 0 WHERE name = $2`, [JSON.stringify(progress), name])
      return progress
    })
    this.bootstrapSums.set(name, new DigestSums(progress.gen))
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
        const w = new GenWriter(client, name, p.gen, true)
        await w.insertAll(rows)
        await w.flush()
        sums?.merge(w.deltas, w.keysDelta)
        keysDelta = w.keysDelta
      }
      p.afterKey = progress.afterKey
      p.readHead = Math.max(p.readHead, progress.readHead)
      p.snapshotDone = progress.done
      await client.query(`UPDATE ${R} SET bootstrap = $1, bootstrap_keys = bootstrap_keys + $2 WHERE name = $3`, [JSON.stringify(p), keysDelta, name])
      return p.gen
    })
  }

  async applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void> {
    await this.bootstrapWrite(name, async (client, sums) => {
      const r = await this.owned(client, name)
      const p = bootstrapping(r)
      const w = new GenWriter(client, name, p.gen, true)
      const fresh = changes.filter((c) => c.seq > p.seq)
      await w.load(fresh.map((c) => c.key))
      for (const c of fresh) {
        checkUpTo(c, upTo)
        w.write(c.key, c.seq, changeText(c))
      }
      await w.flush()
      sums?.merge(w.deltas, w.keysDelta)
      p.seq = Math.max(p.seq, upTo)
      await client.query(`UPDATE ${R} SET bootstrap = $1, bootstrap_keys = bootstrap_keys + $2 WHERE name = $3`, [JSON.stringify(p), w.keysDelta, name])
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
    const held = this.bootstrapSums.get(name)
    this.bootstrapSums.delete(name)
    const ticket = (this.bootstrapWrites.get(name) ?? 0) + 1
    this.bootstrapWrites.set(name, ticket)
    const result = await this.write((client) => fn(client, held))
    const gen = typeof result === 'number' ? result : result.gen
    if (held !== undefined && held.gen === gen && this.bootstrapWrites.get(name) === ticket) this.bootstrapSums.set(name, held)
    return result
  }

  async finishBootstrap(name: string, hook?: ApplyHook<pg.ClientBase>): Promise<ReplicaState> {
    const held = this.bootstrapSums.get(name)
    this.bootstrapSums.delete(name)
    const row = await this.write(async (client) => {
      const r = await this.owned(client, name)
      const p = bootstrapping(r)
      if (!p.snapshotDone || p.seq < p.readHead) {
        throw new BadRequestError(
          `the bootstrap of replica "${name}" is not complete (snapshot ${p.snapshotDone ? 'done' : `copied up to key ${JSON.stringify(p.afterKey)}`}, ` +
            `log applied to ${p.seq} of at least ${p.readHead}): finish copying before making it current`,
        )
      }
      if (hook) await this.diff(client, name, r.gen === 0 ? (r.previous_gen ?? 0) : r.gen, p, hook)
      const sums = held !== undefined && held.gen === p.gen && held.keys === Number(r.bootstrap_keys) ? held : await sumDigest(client, name, p.gen)
      await sums.write(client, name)
      const now = this.clock()
      const { rows } = await client.query<ReplicaRow>(
        `UPDATE ${R} SET gen = $1, epoch = $2, seq = $3, keys = bootstrap_keys, bootstrap = NULL, bootstrap_keys = 0, previous_gen = NULL,
           applied_at = $4, source_head = greatest(source_head, $3),
           behind_since = CASE WHEN $3 >= source_head THEN NULL ELSE coalesce(behind_since, $4) END
         WHERE name = $5 RETURNING *`,
        [p.gen, p.epoch, p.seq, now, name],
      )
      return rows[0] as ReplicaRow
    })
    this.logger.info({ replica: name, gen: row.gen, seq: row.seq, keys: row.keys }, `replica "${name}" is now at seq ${row.seq} (generation ${row.gen})`)
    return toState(row)
  }

  /** The hook sees the difference between generation `from` and the new one, walked in key order. */
  private async diff(client: pg.ClientBase, name: string, from: number, p: BootstrapProgress, hook: ApplyHook<pg.ClientBase>): Promise<void> {
    const old = new GenCursor(client, name, from)
    const cur = new GenCursor(client, name, p.gen)
    const ts = this.clock()
    for (;;) {
      const o = await old.peek()
      const n = await cur.peek()
      if (o === undefined && n === undefined) return
      const order = o === undefined ? 1 : n === undefined ? -1 : compareKeys(o.key, n.key)
      if (order < 0) {
        old.next()
        await runHook(hook, new StoredChange(p.seq, (o as DataRow).key, 'delete', p.seq, ts, null), client, 'bootstrap')
        continue
      }
      const row = n as DataRow
      cur.next()
      if (order === 0) old.next()
      if (order > 0 || (o as DataRow).seq !== row.seq) await runHook(hook, new StoredChange(row.seq, row.key, 'upsert', p.seq, ts, row.data), client, 'bootstrap')
    }
  }

  async cancelBootstrap(name: string): Promise<void> {
    this.bootstrapSums.delete(name)
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
        const r = await this.owned(client, name)
        const keep = [r.gen, progressOf(r)?.gen ?? r.gen, r.previous_gen ?? r.gen]
        const { rows } = await client.query<{ gen: number }>(`SELECT gen FROM ${W} WHERE name = $1 AND gen <> ALL($2::int[]) LIMIT 1`, [name, keep])
        const gen = rows[0]?.gen
        if (gen === undefined) {
          await client.query(`DELETE FROM ${D} WHERE name = $1 AND gen <> ALL($2::int[])`, [name, keep])
          kept = keep
          return 0
        }
        const deleted = await client.query(
          `DELETE FROM ${W} WHERE name = $1 AND gen = $2 AND key IN (SELECT key FROM ${W} WHERE name = $1 AND gen = $2 ORDER BY key LIMIT $3)`,
          [name, gen, GC_CHUNK],
        )
        return deleted.rowCount ?? 0
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
    let written: GenWriter | undefined
    const row = await this.write(async (client) => {
      const r = await this.owned(client, name)
      if (r.gen === 0) throw new BadRequestError(`replica "${name}" in ${this.location} has no copy yet: bootstrap it before applying changes`)
      const w = new GenWriter(client, name, r.gen, false)
      const fresh = changes.filter((c) => c.seq > r.seq)
      await w.load(fresh.map((c) => c.key))
      for (const c of fresh) {
        checkUpTo(c, upTo)
        if (w.write(c.key, c.seq, changeText(c)) && hook) await runHook(hook, c, client, 'apply')
      }
      await w.flush()
      written = w
      const seq = Math.max(r.seq, upTo)
      const now = this.clock()
      const { rows } = await client.query<ReplicaRow>(
        `UPDATE ${R} SET seq = $1, keys = keys + $2, applied_at = $3, source_head = greatest(source_head, $1),
           behind_since = CASE WHEN $1 >= source_head THEN NULL ELSE coalesce(behind_since, $4) END
         WHERE name = $5 RETURNING *`,
        [seq, w.keysDelta, seq > r.seq ? now : r.applied_at, now, name],
      )
      return rows[0] as ReplicaRow
    })
    if (written) this.addToTree(name, written.gen, written.deltas)
    return toState(row)
  }

  async noteSourceHead(name: string, head: Seq): Promise<void> {
    const now = this.clock()
    const n = await this.guard(() =>
      this.pool.query(
        `UPDATE ${R} SET source_head = greatest(source_head, $1), source_head_at = $2,
           behind_since = CASE WHEN greatest(source_head, $1) > seq THEN coalesce(behind_since, $2) ELSE NULL END
         WHERE name = $3 AND owner_id = $4`,
        [head, now, name, this.ownerId],
      ),
    )
    if (n.rowCount === 0) throw await this.lostClaim(name)
  }

  async close(): Promise<void> {
    for (const name of [...this.claims.keys()]) {
      try {
        await this.release(name)
      } catch (error) {
        this.logger.warn({ replica: name, err: error }, `replica "${name}": could not release the claim`)
      }
    }
    if (this.ownsPool) await this.pool.end()
  }

  // ── reconciliation ────────────────────────────────────────────────────────────────────────────

  async repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<pg.ClientBase>): Promise<number> {
    let written: GenWriter | undefined
    const n = await this.write(async (client) => {
      const r = await this.owned(client, name)
      checkRepairAt(name, r, at)
      const w = new GenWriter(client, name, r.gen, false)
      await w.load(fixes.map((f) => f.key))
      const ts = this.clock()
      let n = 0
      for (const fix of fixes) {
        const { seq, text } = repairVersion(fix, r.seq)
        if (!w.replace(fix.key, seq, text)) continue
        n++
        if (hook) await runHook(hook, new StoredChange(seq, fix.key, text === null ? 'delete' : 'upsert', seq, ts, text), client, 'repair')
      }
      await w.flush()
      written = w
      if (w.keysDelta !== 0) await client.query(`UPDATE ${R} SET keys = keys + $1 WHERE name = $2`, [w.keysDelta, name])
      return n
    })
    if (written) this.addToTree(name, written.gen, written.deltas)
    return n
  }

  async rehash(name: string): Promise<RehashReport> {
    return this.write(async (client) => {
      const r = await this.owned(client, name)
      const counts = new Float64Array(2 ** DIGEST_BITS)
      const sums = new Map<number, bigint>()
      let rows = 0
      let staleRows = 0
      let after = ''
      for (;;) {
        const page = (
          await client.query<{ key: string; seq: number; data: string; hash: Buffer | null; bucket: number | null }>(
            `SELECT key, seq, data, hash, bucket FROM ${W} WHERE name = $1 AND gen = $2 AND key > $3 AND data IS NOT NULL ORDER BY key LIMIT 1000`,
            [name, r.gen, after],
          )
        ).rows
        const stale: Array<{ key: string; hash: Buffer; bucket: number }> = []
        for (const row of page) {
          const h = rowHash(row.key, row.seq, row.data)
          const bucket = bucketOf(row.key)
          if (row.hash === null || bufferToHash(row.hash) !== h || row.bucket !== bucket) stale.push({ key: row.key, hash: hashToBuffer(h), bucket })
          rows++
          counts[bucket]! += 1
          sums.set(bucket, addHash(sums.get(bucket) ?? 0n, h))
        }
        if (stale.length > 0) {
          staleRows += stale.length
          await client.query(
            `UPDATE ${W} w SET hash = u.hash, bucket = u.bucket FROM unnest($3::text[], $4::bytea[], $5::int[]) AS u(key, hash, bucket)
             WHERE w.name = $1 AND w.gen = $2 AND w.key = u.key`,
            [name, r.gen, stale.map((x) => x.key), stale.map((x) => x.hash), stale.map((x) => x.bucket)],
          )
        }
        const last = page[page.length - 1]
        if (last === undefined) break
        after = last.key
      }
      const stored = new Map(
        (await client.query<{ bucket: number; count: number; sum: Buffer }>(`SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2`, [name, r.gen])).rows.map((l) => [
          l.bucket,
          { count: l.count, sum: bufferToHash(l.sum) },
        ]),
      )
      const buckets: number[] = []
      const bucketCounts: number[] = []
      const bucketSums: Buffer[] = []
      let wrongBuckets = 0
      for (let b = 0; b < counts.length; b++) {
        const count = counts[b]!
        const sum = sums.get(b) ?? 0n
        const held = stored.get(b)
        if ((held?.count ?? 0) !== count || (held?.sum ?? 0n) !== sum) wrongBuckets++
        if (count > 0) {
          buckets.push(b)
          bucketCounts.push(count)
          bucketSums.push(hashToBuffer(sum))
        }
      }
      if (wrongBuckets > 0) {
        this.trees.delete(name)
        await client.query(`DELETE FROM ${D} WHERE name = $1 AND gen = $2`, [name, r.gen])
        await client.query(`INSERT INTO ${D} (name, gen, bucket, count, sum) SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])`, [
          name,
          r.gen,
          buckets,
          bucketCounts,
          bucketSums,
        ])
      }
      if (r.keys !== rows) await client.query(`UPDATE ${R} SET keys = $1 WHERE name = $2`, [rows, name])
      return { rows, staleRows, wrongBuckets }
    })
  }

  async bucketEntries(name: string, buckets: number[]): Promise<BucketList[]> {
    for (const b of buckets) {
      if (!Number.isSafeInteger(b) || b < 0 || b >= 2 ** DIGEST_BITS) throw new BadRequestError(`bucket ${b} is not a leaf bucket (0 to ${2 ** DIGEST_BITS - 1})`)
    }
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
          const lists = new Map<number, BucketList>(buckets.map((bucket) => [bucket, { bucket, count: 0, sum: 0n, entries: [] }]))
          // A row without a stored hash was written outside tidemark: only a deep run (rehash) sees it.
          const { rows } = await client.query<{ bucket: number; key: string; seq: number; hash: Buffer }>(
            `SELECT bucket, key, seq, hash FROM ${W} WHERE name = $1 AND gen = $2 AND bucket = ANY($3::int[]) AND data IS NOT NULL AND hash IS NOT NULL ORDER BY bucket, key`,
            [name, r.gen, buckets],
          )
          for (const row of rows) {
            const list = lists.get(row.bucket)
            if (!list) continue
            const hash = bufferToHash(row.hash)
            list.entries.push({ key: row.key, seq: row.seq, hash } satisfies DigestEntry)
            list.count++
            list.sum = addHash(list.sum, hash)
          }
          return buckets.map((b) => lists.get(b) as BucketList)
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
    return this.write(async (client) => {
      await this.known(name, client)
      const { rows } = await client.query<{ id: number }>('INSERT INTO tidemark.replica_runs (name, at, record) VALUES ($1, $2, $3) RETURNING id', [
        name,
        run.finishedAt,
        JSON.stringify(run),
      ])
      await client.query(
        'DELETE FROM tidemark.replica_runs WHERE name = $1 AND id NOT IN (SELECT id FROM tidemark.replica_runs WHERE name = $1 ORDER BY id DESC LIMIT $2)',
        [name, RUNS_KEPT],
      )
      return (rows[0] as { id: number }).id
    })
  }

  async runs(name: string, limit = 10): Promise<ReconcileRun[]> {
    const { rows } = await this.guard(() =>
      this.pool.query<{ id: number; record: string }>('SELECT id, record FROM tidemark.replica_runs WHERE name = $1 ORDER BY id DESC LIMIT $2', [name, limit]),
    )
    return rows.map((r) => ({ ...(JSON.parse(r.record) as ReconcileRun), id: r.id }))
  }

  async requestRun(name: string, request: { mode: ReconcileMode; deep: boolean }): Promise<number> {
    return this.write(async (client) => {
      await this.known(name, client)
      const { rows } = await client.query<{ id: number }>(
        'INSERT INTO tidemark.replica_requests (name, mode, deep, requested_at) VALUES ($1, $2, $3, $4) RETURNING id',
        [name, request.mode, request.deep, this.clock()],
      )
      return (rows[0] as { id: number }).id
    })
  }

  async takeRunRequests(name: string): Promise<RunRequest[]> {
    const { rows } = await this.guard(() =>
      this.pool.query<{ id: number; mode: ReconcileMode; deep: boolean; requested_at: number }>(
        'UPDATE tidemark.replica_requests SET taken_at = $1 WHERE name = $2 AND taken_at IS NULL RETURNING id, mode, deep, requested_at',
        [this.clock(), name],
      ),
    )
    return rows.map((r) => ({ id: r.id, mode: r.mode, deep: r.deep, requestedAt: r.requested_at })).sort((a, b) => a.id - b.id)
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────────

  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.writesBegun++
    this.writesInFlight++
    try {
      return await this.guard(() => inTransaction(this.pool, fn))
    } catch (error) {
      this.trees.clear()
      throw error
    } finally {
      this.writesInFlight--
    }
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
    if (r === undefined || r.owner_id !== this.ownerId) throw await this.lostClaim(name, r)
    return r
  }

  private async lostClaim(name: string, known?: ReplicaRow): Promise<Error> {
    const r = known ?? (await this.row(this.pool, name))
    if (r === undefined) return new BadRequestError(`no replica "${name}" in ${this.location}: claim it first`)
    if (!this.claims.has(name)) return new ConflictError(`replica "${name}" in ${this.location} is not claimed by this replicator: claim it before writing`)
    const owner = ownerOf(r)
    return new ConflictError(
      `lost the claim on replica "${name}" in ${this.location}` +
        (owner ? `: it is now replicated by ${describeOwner(owner)}` : ': it was released') +
        '; this replicator stops so that only one process writes the replica',
    )
  }

  private async known(name: string, db: pg.Pool | pg.ClientBase = this.pool): Promise<ReplicaRow> {
    const r = await this.row(db, name)
    if (r === undefined) throw new BadRequestError(`no replica "${name}" in ${this.location}: list them with \`tidemark status\``)
    return r
  }
}

interface Version {
  seq: number
  hash: bigint | null
  /** The data to write (a dirty version's); null for a version loaded and not rewritten. */
  data: string | null
  /** false: the key has no row (never had, or deleted without a tombstone). */
  present: boolean
  dirty: boolean
}

/**
 * Writes versions into one generation inside the caller's transaction, higher seq wins: the keys'
 * current versions are read in one query (`load`), decided in memory, and written back with one
 * upsert, one delete and one digest update (`flush`), so a batch costs a few round trips whatever
 * its size.
 */
class GenWriter {
  keysDelta = 0
  private readonly versions = new Map<string, Version>()
  readonly deltas = new Map<number, BucketDelta>()

  constructor(
    private readonly client: pg.ClientBase,
    private readonly name: string,
    readonly gen: number,
    /**
     * While bootstrapping: keep deletes as tombstones (an older snapshot row must not revive the key),
     * and leave the digest alone — finishBootstrap sums it from the rows' stored hashes once, instead
     * of every chunk rewriting thousands of its buckets.
     */
    private readonly bootstrapping: boolean,
  ) {}

  async load(keys: string[]): Promise<void> {
    if (keys.length === 0) return
    // Not `data`: only the versions written here (dirty) are written back, with their own data.
    // One primary-key probe per key, whatever the statistics: a LATERAL subquery with LIMIT 1 is
    // not flattened into a join. With `key = ANY($3)` and no statistics yet on a freshly copied
    // generation (name and gen estimated at 27 rows of 1,000,000), the planner read the whole
    // generation through its bucket index and filtered it, per page: 8.7 s of the 15 s it took to
    // stream 200,000 changes into a 1,000,000-row replica.
    const { rows } = await this.client.query<{ key: string; seq: number; hash: Buffer | null }>(
      `SELECT w.key, w.seq, w.hash FROM unnest($3::text[]) AS k(key)
       CROSS JOIN LATERAL (SELECT key, seq, hash FROM ${W} WHERE name = $1 AND gen = $2 AND key = k.key LIMIT 1) AS w`,
      [this.name, this.gen, [...new Set(keys)]],
    )
    for (const r of rows) this.versions.set(r.key, { seq: r.seq, hash: r.hash ? bufferToHash(r.hash) : null, data: null, present: true, dirty: false })
  }

  /**
   * For snapshot rows, mostly keys the generation does not hold yet: one insert that skips the keys
   * already there, and only those (and a key twice in the chunk) are compared version by version.
   */
  async insertAll(rows: StateRow[]): Promise<void> {
    if (rows.length === 0) return
    const texts = rows.map(rowText)
    const hashes = rows.map((r, i) => {
      const text = texts[i] as string | null
      return text === null ? null : rowHash(r.key, r.seq, text)
    })
    const { rows: inserted } = await this.client.query<{ key: string }>(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket)
       SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::int[])
       ON CONFLICT (name, gen, key) DO NOTHING RETURNING key`,
      [
        this.name,
        this.gen,
        rows.map((r) => r.key),
        rows.map((r) => r.seq),
        texts,
        hashes.map((h) => (h === null ? null : hashToBuffer(h))),
        rows.map((r) => bucketOf(r.key)),
      ],
    )
    const fresh = new Set(inserted.map((r) => r.key))
    const rest: number[] = []
    rows.forEach((r, i) => {
      // The first of a key the insert took; any other goes through the version comparison.
      if (!fresh.delete(r.key)) return void rest.push(i)
      const h = hashes[i] ?? null
      this.versions.set(r.key, { seq: r.seq, hash: h, data: texts[i] ?? null, present: true, dirty: false })
      if (h !== null) this.account(r.key, null, h)
    })
    if (rest.length === 0) return
    await this.load(rest.map((i) => (rows[i] as StateRow).key).filter((k) => !this.versions.has(k)))
    for (const i of rest) {
      const r = rows[i] as StateRow
      this.write(r.key, r.seq, texts[i] ?? null)
    }
  }

  /** Takes the version when it is newer than the one held (or there is none); says whether it did. */
  write(key: string, seq: Seq, text: string | null): boolean {
    const cur = this.versions.get(key)
    if (cur?.present && cur.seq >= seq) return false
    this.put(key, seq, text, cur)
    return true
  }

  /** Sets the key to exactly this version (a repair: the seq may be lower); says whether anything changed. */
  replace(key: string, seq: Seq, text: string | null): boolean {
    const cur = this.versions.get(key)
    const h = text === null ? null : rowHash(key, seq, text)
    if (!cur?.present && h === null) return false
    if (cur?.present && cur.seq === seq && cur.hash !== null && cur.hash === h) return false
    this.put(key, seq, text, cur)
    return true
  }

  private put(key: string, seq: Seq, text: string | null, cur: Version | undefined): void {
    const h = text === null ? null : rowHash(key, seq, text)
    const present = text !== null || this.bootstrapping
    this.versions.set(key, { seq, hash: h, data: text, present, dirty: true })
    this.account(key, cur?.present ? cur.hash : null, h)
  }

  private account(key: string, old: bigint | null, next: bigint | null): void {
    if (old === null && next === null) return
    const bucket = bucketOf(key)
    let d = this.deltas.get(bucket)
    if (!d) this.deltas.set(bucket, (d = { count: 0, sum: 0n, neg: 0n }))
    if (old !== null) {
      d.count -= 1
      d.neg += old
      this.keysDelta -= 1
    }
    if (next !== null) {
      d.count += 1
      d.sum += next
      this.keysDelta += 1
    }
  }

  async flush(): Promise<void> {
    const up: Array<[string, Version]> = []
    const gone: string[] = []
    for (const [key, v] of this.versions) {
      if (!v.dirty) continue
      if (v.present) up.push([key, v])
      else gone.push(key)
    }
    if (up.length > 0) {
      await this.client.query(
        `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket)
         SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::int[])
         ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash, bucket = excluded.bucket`,
        [
          this.name,
          this.gen,
          up.map(([k]) => k),
          up.map(([, v]) => v.seq),
          up.map(([, v]) => v.data),
          up.map(([, v]) => (v.hash === null ? null : hashToBuffer(v.hash))),
          up.map(([k]) => bucketOf(k)),
        ],
      )
    }
    if (gone.length > 0) await this.client.query(`DELETE FROM ${W} WHERE name = $1 AND gen = $2 AND key = ANY($3::text[])`, [this.name, this.gen, gone])
    if (this.deltas.size === 0 || this.bootstrapping) return
    const buckets = [...this.deltas.keys()]
    const { rows } = await this.client.query<{ bucket: number; count: number; sum: Buffer }>(
      `SELECT d.bucket, d.count, d.sum FROM unnest($3::int[]) AS b(bucket)
       CROSS JOIN LATERAL (SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2 AND bucket = b.bucket LIMIT 1) AS d`,
      [this.name, this.gen, buckets],
    )
    const current = new Map(rows.map((r) => [r.bucket, { count: r.count, sum: bufferToHash(r.sum) }]))
    const next = buckets.map((b) => applyDelta(current.get(b), this.deltas.get(b) as BucketDelta))
    await this.client.query(
      `INSERT INTO ${D} (name, gen, bucket, count, sum) SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])
       ON CONFLICT (name, gen, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
      [this.name, this.gen, buckets, next.map((n) => n.count), next.map((n) => hashToBuffer(n.sum))],
    )
  }
}

/** Reads one generation's live rows in key order, a page at a time. */
class GenCursor {
  private page: DataRow[] = []
  private i = 0
  private after = ''
  private done = false

  constructor(
    private readonly client: pg.ClientBase,
    private readonly name: string,
    private readonly gen: number,
  ) {}

  async peek(): Promise<DataRow | undefined> {
    if (this.i < this.page.length) return this.page[this.i]
    if (this.done) return undefined
    this.page = (
      await this.client.query<DataRow>(
        `SELECT key, seq, data FROM ${W} WHERE name = $1 AND gen = $2 AND key > $3 AND data IS NOT NULL ORDER BY key LIMIT $4`,
        [this.name, this.gen, this.after, DIFF_PAGE],
      )
    ).rows
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

/** Generation `gen`'s digest summed from its rows' stored hashes, read a page at a time. */
async function sumDigest(client: pg.ClientBase, name: string, gen: number): Promise<DigestSums> {
  const sums = new DigestSums(gen)
  let after = ''
  for (;;) {
    const { rows } = await client.query<{ key: string; bucket: number; hash: Buffer }>(
      `SELECT key, bucket, hash FROM ${W} WHERE name = $1 AND gen = $2 AND key > $3 AND hash IS NOT NULL ORDER BY key LIMIT 10000`,
      [name, gen, after],
    )
    for (const r of rows) sums.add(r.bucket, r.hash)
    if (rows.length < 10000) break
    after = (rows[rows.length - 1] as { key: string }).key
  }
  return sums
}

/**
 * Whether snapshot rows can go in with a COPY, which cannot meet a key the generation holds: keys
 * strictly ascending and none in the generation between the first and the last.
 */
async function copyable(client: pg.ClientBase, name: string, gen: number, rows: StateRow[]): Promise<boolean> {
  if (rows.length === 0) return true
  for (let i = 1; i < rows.length; i++) if (compareKeys((rows[i - 1] as StateRow).key, (rows[i] as StateRow).key) >= 0) return false
  const { rows: held } = await client.query<{ any: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${W} WHERE name = $1 AND gen = $2 AND key >= $3 AND key <= $4) AS any`,
    [name, gen, (rows[0] as StateRow).key, (rows[rows.length - 1] as StateRow).key],
  )
  return held[0]?.any !== true
}

async function runHook(hook: ApplyHook<pg.ClientBase>, change: Change, client: pg.ClientBase, cause: ApplyContext['cause']): Promise<void> {
  try {
    await hook(change, client, { cause })
  } catch (error) {
    // The hook's query met the database going away (a restart, a dropped connection): not a fault
    // of the hook, and the replica must retry the transaction when the database is back, not stop.
    const translated = translatePgError(error, "the replica's database")
    if (translated instanceof StoreUnavailableError) throw translated
    throw new ApplyFailedError(change.seq, change.key, error)
  }
}





function bootstrapping(r: ReplicaRow): BootstrapProgress {
  const p = progressOf(r)
  if (p === null) throw new BadRequestError(`replica "${r.name}" has no bootstrap in progress: begin one first`)
  return p
}



