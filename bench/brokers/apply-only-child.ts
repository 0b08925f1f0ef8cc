/**
 * The replica's apply cost with no transport at all, in a process of its own (argv[2] is an
 * ApplyOnlyJob as JSON; the result goes to stdout as JSON): the fan-out's messages, already in
 * memory, are decoded as a broker transport decodes them, checked against the checkpoint
 * (planDelivery) and applied by a SqliteReplicaStore file (WAL, synchronous = NORMAL) in one
 * transaction per message — what a replica does for each message, less the network. What one
 * core does this way bounds what any transport can deliver per core.
 */
import { join } from 'node:path'
import type { StoredChange } from '../../src/protocol/encoded.js'
import { planDelivery } from '../../src/replica/delivery-plan.js'
import { openDatabase } from '../../src/store/sqlite/database.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { decodeMessage } from '../../src/transport/broker/broker-message.js'
import { nowMs } from '../harness.js'
import { fanOutMessages } from './fan-out-messages.js'

export interface ApplyOnlyJob {
  changes: number
  txSize: number
  /** A folder for the replica file. */
  dir: string
  /**
   * Instead: SQLite alone — each message's changes (already decoded, untimed) upserted by key into
   * a plain table `(key PRIMARY KEY, seq, data) WITHOUT ROWID`, one transaction a message, no
   * checks, hashes, digest or checkpoint. The floor under any replica on SQLite.
   */
  bare?: boolean
}

export interface ApplyOnlyResult {
  ms: number
  cpuMs: number
  changes: number
}

const job = JSON.parse(process.argv[2] as string) as ApplyOnlyJob
const epoch = 'applyonly'
const messages = fanOutMessages('fan', epoch, job.changes, job.txSize)
const result = job.bare ? await bare() : await replica()
process.stdout.write(`${JSON.stringify({ ...result, changes: job.changes } satisfies ApplyOnlyResult)}\n`)

async function replica(): Promise<{ ms: number; cpuMs: number }> {
  const store = SqliteReplicaStore.open(join(job.dir, 'apply-only.db'))
  await store.claim('r', 'fan', 'bench')
  await store.beginBootstrap('r', epoch, 0)
  await store.writeSnapshotChunk('r', [], { afterKey: null, readHead: 0, done: true })
  let checkpoint = (await store.finishBootstrap('r')).seq
  const cpu = process.cpuUsage()
  const started = nowMs()
  for (const m of messages) {
    const decoded = decodeMessage((name) => m.headers[name], m.body)
    if (decoded.kind !== 'batch') throw new Error(decoded.reason)
    const plan = planDelivery(checkpoint, decoded.batch.changes)
    if (plan.gap) throw new Error(`apply-only: message ${decoded.batch.first}–${decoded.batch.last} does not follow ${checkpoint}`)
    checkpoint = (await store.apply('r', plan.apply, plan.upTo)).seq
  }
  const ms = nowMs() - started
  const used = process.cpuUsage(cpu)
  await store.close()
  if (checkpoint !== job.changes) throw new Error(`apply-only: ended at ${checkpoint}, not ${job.changes}`)
  return { ms, cpuMs: (used.user + used.system) / 1000 }
}

async function bare(): Promise<{ ms: number; cpuMs: number }> {
  const decoded = messages.map((m) => {
    const d = decodeMessage((name) => m.headers[name], m.body)
    if (d.kind !== 'batch') throw new Error(d.reason)
    return d.batch.changes
  })
  const db = openDatabase(join(job.dir, 'bare.db'), { create: true })
  db.pragma('synchronous = NORMAL')
  db.exec('CREATE TABLE copy (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT) WITHOUT ROWID')
  const upsert = db.prepare('INSERT INTO copy (key, seq, data) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, data = excluded.data')
  const write = db.transaction((changes: StoredChange[]) => {
    for (const c of changes) upsert.run(c.key, c.seq, c.dataText)
  })
  const cpu = process.cpuUsage()
  const started = nowMs()
  for (const changes of decoded) write(changes)
  const ms = nowMs() - started
  const used = process.cpuUsage(cpu)
  db.close()
  return { ms, cpuMs: (used.user + used.system) / 1000 }
}
