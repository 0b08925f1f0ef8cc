import type { Database } from 'better-sqlite3'
import { BadRequestError, NotAStoreError } from '../../errors.js'
import type { Seq } from '../../protocol/types.js'
import type { ReconcileRun } from '../../reconcile/run.js'
import type { BootstrapProgress, ReplicaState, ReplicaStore } from '../replica-store.js'
import { openDatabase } from './database.js'
import { checkLease } from '../replica-lease.js'
import { SqliteReplicaStore } from './sqlite-replica-store.js'

/** What a replica is doing, as far as its file tells: no network, no claim taken. */
export type DerivedPhase = 'bootstrapping' | 'catching-up' | 'live' | 'stopped'

export interface ReplicaReport {
  name: string
  feed: string
  source: string
  /**
   * `bootstrapping`, `catching-up` or `live` while a replicator holds a live claim on it (the last
   * two told apart by the source head it last heard of); `stopped` otherwise, a bootstrap in
   * progress included (it resumes from its last chunk).
   */
  phase: DerivedPhase
  /** The replicator holding the claim, when there is a live one. */
  replicator: { pid: number; host: string; leaseUntil: number } | null
  epoch: string | null
  /** The current generation (0 before the first bootstrap completes; a bootstrap builds the next). */
  gen: number
  checkpoint: Seq
  keys: number
  appliedAt: number | null
  sourceHead: Seq
  sourceHeadAt: number | null
  behindSince: number | null
  /** Behind the last source head seen: in changes, and in seconds since it fell behind (null: not behind). */
  lag: { changes: number; seconds: number | null }
  /** The bootstrap under way, with `copied`: the keys in the new generation so far. */
  bootstrap: (BootstrapProgress & { copied: number }) | null
  /** The latest reconciliation runs, newest first. */
  runs: ReconcileRun[]
}

export interface OwnerRow {
  name: string
  owner_id: string | null
  owner_pid: number | null
  owner_host: string | null
  owner_expires: number | null
  bootstrap_keys?: number
}

/**
 * Reads the replicas of a SQLite file without writing to it: a read-only connection, which also
 * means a file that is not a replica gets no replica tables added by looking at it. Throws
 * StoreUnavailableError for a missing file, NotAStoreError for one that is not a tidemark replica.
 */
export async function readReplicas(path: string, options: { name?: string; now?: number } = {}): Promise<ReplicaReport[]> {
  const db = openDatabase(path, { create: false, readonly: true })
  try {
    if (!hasTable(db, 'tidemark_replica_replicas')) {
      const hint = hasTable(db, 'tidemark_feeds') ? ' (it is a source: list its feeds with `tidemark feeds`)' : ''
      throw new NotAStoreError(`${path} is not a tidemark replica: it has no replica tables${hint}`)
    }
    // The store's own reading, over the read-only connection (its schema check writes nothing once
    // the tables exist).
    return await reportReplicas(SqliteReplicaStore.attach(db), path, (name) => rawRow(db, name), options)
  } finally {
    db.close()
  }
}

/**
 * The reports of a store's replicas (all, or the one named), from the store's own reading and each
 * replica's raw row: shared by the backends (the PostgreSQL one: store/postgres/replica-report.ts).
 */
export async function reportReplicas(
  store: ReplicaStore,
  location: string,
  rawRowOf: (name: string) => OwnerRow | Promise<OwnerRow>,
  options: { name?: string; now?: number },
): Promise<ReplicaReport[]> {
  const all = await store.list()
  if (all.length === 0) {
    throw new BadRequestError(`${location} holds no replica yet: start one with \`tidemark replicate <url> <feed> --into ${location}\``)
  }
  const states = options.name === undefined ? all : all.filter((s) => s.name === options.name)
  if (states.length === 0) {
    throw new BadRequestError(`no replica "${options.name}" in ${location}: it holds ${all.map((s) => `"${s.name}"`).join(', ')}`)
  }
  const now = options.now ?? Date.now()
  const reports: ReplicaReport[] = []
  for (const s of states) reports.push({ ...report(s, await rawRowOf(s.name), now), runs: await store.runs(s.name, 5) })
  return reports
}

function report(s: ReplicaState, row: OwnerRow, now: number): Omit<ReplicaReport, 'runs'> {
  const replicator = liveClaim(row, now)
  const bootstrap = s.bootstrap === null ? null : { ...s.bootstrap, copied: row.bootstrap_keys ?? 0 }
  const behind = Math.max(0, s.sourceHead - s.seq)
  let phase: DerivedPhase = 'stopped'
  if (replicator !== null) phase = bootstrap !== null || s.gen === 0 ? 'bootstrapping' : behind > 0 ? 'catching-up' : 'live'
  return {
    name: s.name,
    feed: s.feed,
    source: s.source,
    phase,
    replicator,
    epoch: s.epoch,
    gen: s.gen,
    checkpoint: s.seq,
    keys: s.keys,
    appliedAt: s.appliedAt,
    sourceHead: s.sourceHead,
    sourceHeadAt: s.sourceHeadAt,
    behindSince: s.behindSince,
    lag: { changes: behind, seconds: behind > 0 && s.behindSince !== null ? Math.max(0, now - s.behindSince) / 1000 : null },
    bootstrap,
  }
}

function hasTable(db: Database, name: string): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?`).get(name) !== undefined
}

// The read below goes past the ReplicaStore port, which tells neither who holds a claim nor how
// many keys a bootstrap has copied so far; both belong in ReplicaState / BootstrapProgress and
// move there once the store offers them.

/** The replica's row as the SQLite store keeps it: the claim, and the keys copied by the bootstrap under way. */
function rawRow(db: Database, name: string): OwnerRow {
  return db.prepare('SELECT * FROM tidemark_replica_replicas WHERE name = ?').get(name) as OwnerRow
}

/** The claim on the replica when it is live (the lease runs and, on this host, the process exists). */
function liveClaim(r: OwnerRow, now: number): ReplicaReport['replicator'] {
  if (r.owner_id === null) return null
  const owner = { id: r.owner_id, pid: r.owner_pid ?? 0, host: r.owner_host ?? '', expires: r.owner_expires ?? 0 }
  // Nobody's claim id is the empty string: checkLease then says whether anyone else holds it.
  if (checkLease(owner, '', now).holder === null) return null
  return { pid: owner.pid, host: owner.host, leaseUntil: owner.expires }
}
