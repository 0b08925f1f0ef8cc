import type pg from 'pg'
import type { ReconcileMode, ReconcileRun, RunRequest } from '../../reconcile/run.js'

/** Reconciliation runs kept per replica. */
const RUNS_KEPT = 100

/** The reconciliation log of a replica on PostgreSQL (ReplicaStore.recordRun, runs, requestRun, takeRunRequests). */
export async function insertRun(client: pg.ClientBase, name: string, run: ReconcileRun): Promise<number> {
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
}

export async function latestRuns(db: pg.Pool, name: string, limit: number): Promise<ReconcileRun[]> {
  const { rows } = await db.query<{ id: number; record: string }>('SELECT id, record FROM tidemark.replica_runs WHERE name = $1 ORDER BY id DESC LIMIT $2', [name, limit])
  return rows.map((r) => ({ ...(JSON.parse(r.record) as ReconcileRun), id: r.id }))
}

export async function insertRequest(client: pg.ClientBase, name: string, request: { mode: ReconcileMode; deep: boolean }, now: number): Promise<number> {
  const { rows } = await client.query<{ id: number }>(
    'INSERT INTO tidemark.replica_requests (name, mode, deep, requested_at) VALUES ($1, $2, $3, $4) RETURNING id',
    [name, request.mode, request.deep, now],
  )
  return (rows[0] as { id: number }).id
}

export async function takeRequests(db: pg.Pool, name: string, now: number): Promise<RunRequest[]> {
  const { rows } = await db.query<{ id: number; mode: ReconcileMode; deep: boolean; requested_at: number }>(
    'UPDATE tidemark.replica_requests SET taken_at = $1 WHERE name = $2 AND taken_at IS NULL RETURNING id, mode, deep, requested_at',
    [now, name],
  )
  return rows.map((r) => ({ id: r.id, mode: r.mode, deep: r.deep, requestedAt: r.requested_at })).sort((a, b) => a.id - b.id)
}
