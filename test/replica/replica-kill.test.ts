/**
 * A real replicator process, SIGKILLed at random moments while an owner writes continuously —
 * mid-bootstrap (a big initial state copied in small chunks) and while applying live — and the
 * replica file checked after each kill as nothing but a file: its checkpoint ends a source
 * transaction, its rows are the source's state at that checkpoint (replayed from the source's log),
 * its digest is the one its rows give, and the projection hook (in the same database) has been given
 * every change exactly once. Restarted, it resumes and ends equal to the source, digest and rows.
 *
 * The replicator is test/fixtures/replicator-child.ts (the library over HTTP, with a counting hook);
 * the last part does the same with the real CLI, `tidemark replicate`.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { readReplicas, type ReplicaReport } from '../../src/store/sqlite/replica-report.js'
import type { StoredRow } from '../../src/protocol/encoded.js'
import type { Seq } from '../../src/protocol/types.js'
import { CLI, ROOT } from '../cli/run-cli.js'
import {
  assertExactAtCheckpoint,
  assertSameRows,
  readReplicaFile,
  seeded,
  startOwner,
  until,
  type Owner,
  type ReplicaFile,
  type SourceLog,
  type Version,
} from '../fixtures/replica-e2e.js'

const FEED = 'customers'

interface Child {
  process: ChildProcess
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** stderr so far, as JSON lines where they parse. */
  lines(): Array<Record<string, unknown>>
}

function spawnNode(args: string[]): Child {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  return {
    process: child,
    exited,
    lines: () =>
      stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

const fixtureReplicator = (url: string, into: string): Child =>
  spawnNode(['--import', 'tsx', 'test/fixtures/replicator-child.ts', url, FEED, into, '100', '200'])

const cliReplicator = (url: string, into: string): Child =>
  spawnNode([...CLI, 'replicate', url, FEED, '--into', into, '--snapshot-chunk', '100'])

async function sigkill(child: Child): Promise<void> {
  child.process.kill('SIGKILL')
  const exit = await child.exited
  assert.equal(exit.signal, 'SIGKILL', `the replicator was killed, not ended by itself: ${JSON.stringify(exit)} ${JSON.stringify(child.lines().slice(-3))}`)
}

/** The one replica of the file as `tidemark status` reads it (no claim taken, read-only). */
async function report(path: string): Promise<ReplicaReport> {
  const [r] = await readReplicas(path)
  assert.ok(r)
  return r
}

interface Applied {
  seq: Seq
  n: number
  via: 'swap' | 'live'
  tx: Seq
}

interface HookTables {
  applied: Applied[]
  projection: Array<{ key: string; seq: Seq; data: string }>
}

const readHookTables = (db: import('better-sqlite3').Database): HookTables => ({
  applied: db.prepare('SELECT seq, n, via, tx FROM hook_applied ORDER BY seq').all() as Applied[],
  projection: db.prepare('SELECT key, seq, data FROM projection ORDER BY key').all() as HookTables['projection'],
})

/**
 * The hook's tables, written in the replica's transactions: every change given once (n = 1); the
 * swap gave exactly the rows of the source's state at the swap's checkpoint, live apply exactly
 * every change after it up to the checkpoint; the projection equals the copy.
 */
function assertHookExactlyOnce(file: ReplicaFile, log: SourceLog, what: string): void {
  const { applied, projection } = file.extra as HookTables
  const cp = file.state.seq
  const twice = applied.filter((a) => a.n !== 1)
  assert.deepEqual(twice.slice(0, 5), [], `${what}: ${twice.length} changes were given to the hook more than once`)
  if (file.state.gen === 0) {
    assert.equal(applied.length, 0, `${what}: the hook ran before any copy was made`)
    assert.equal(projection.length, 0)
    return
  }
  const swap = applied.filter((a) => a.via === 'swap')
  const live = applied.filter((a) => a.via === 'live')
  const swapAt = [...new Set(swap.map((a) => a.tx))]
  assert.equal(swapAt.length, 1, `${what}: one bootstrap swap, at one checkpoint (saw ${swapAt.join(', ')})`)
  const s = swapAt[0] as Seq
  const atSwap = [...log.stateAt(s).values()].map((v) => v.seq).sort((a, b) => a - b)
  assert.deepEqual(
    swap.map((a) => a.seq),
    atSwap,
    `${what}: the swap gave the hook the source's rows at ${s}`,
  )
  // Live seqs are distinct (the table's key): exactly s+1 … cp when there are cp - s of them within.
  assert.equal(live.length, cp - s, `${what}: live apply gave the hook ${live.length} changes for (${s}, ${cp}]`)
  if (live.length > 0) assert.deepEqual([live[0]?.seq, live.at(-1)?.seq], [s + 1, cp])
  for (const a of live) assert.equal(a.tx, log.at(a.seq).tx, `${what}: change ${a.seq} came with its tx`)
  const projected = new Map<string, Version>(projection.map((p) => [p.key, { seq: p.seq, data: p.data }]))
  const copy = new Map<string, Version>([...file.rows].map(([k, v]) => [k, { seq: v.seq, data: JSON.stringify(JSON.parse(v.data)) }]))
  assertSameRows(projected, copy, `${what}: the projection is the copy`)
}

/** After a kill: the file alone is checked. Returns it. */
async function checkAfterKill(path: string, owner: Owner, what: string, hook: boolean): Promise<ReplicaFile> {
  const file = await readReplicaFile(path, FEED, hook ? readHookTables : undefined)
  await assertExactAtCheckpoint(file, owner.log, what)
  if (hook) assertHookExactlyOnce(file, owner.log, what)
  return file
}

/** The end: caught up with the stopped owner, compared with the source through its own API. */
async function checkFinal(path: string, owner: Owner, head: Seq, hook: boolean): Promise<void> {
  const file = await checkAfterKill(path, owner, 'at the end', hook)
  assert.equal(file.state.seq, head)
  const sourceRows = new Map<string, Version>()
  for (let after: string | null = null; ; ) {
    const chunk = await owner.store.snapshot(FEED, after, 5000)
    for (const r of chunk.rows) sourceRows.set(r.key, { seq: r.seq, data: (r as StoredRow).dataText as string })
    if (chunk.done) break
    after = chunk.last
  }
  assertSameRows(file.rows, sourceRows, 'at the end, with the source')
  const sourceDigest = await owner.store.digestLeaves(FEED)
  assert.equal(sourceDigest.seq, head)
  assert.deepEqual(file.digest, sourceDigest, 'the digests agree')
}

/**
 * Kills `start()`'s replicator `bootstrapKills` times mid-bootstrap and `liveKills` times while it
 * applies, checking the file after each, then lets it finish. Returns what the kills saw.
 */
async function killAndCheck(
  owner: Owner,
  start: (url: string, into: string) => Child,
  options: { bootstrapKills: number; liveKills: number; hook: boolean; random: ReturnType<typeof seeded> },
): Promise<string[]> {
  const { random, hook } = options
  const into = join(owner.dir, hook ? 'replica.db' : 'cli-replica.db')
  const seen: string[] = []
  const children: Child[] = []
  const writer = owner.writeContinuously()
  const started = (child: Child): Child => (children.push(child), child)
  try {
    // Mid-bootstrap: once it has copied a chunk (the first time) or a chunk past the last kill's.
    let previous: ReplicaFile | undefined
    for (let k = 0; k < options.bootstrapKills; k++) {
      const child = started(start(owner.url, into))
      const since = previous?.state.bootstrap?.afterKey ?? null
      await until(async () => {
        const r = await report(into)
        return r.bootstrap !== null && r.bootstrap.afterKey !== null && (since === null || r.bootstrap.afterKey > since)
      }, `bootstrap progress past ${since}`)
      await delay(random.int(0, 20))
      await sigkill(child)
      const file = await checkAfterKill(into, owner, `killed mid-bootstrap (${k + 1})`, hook)
      const p = file.state.bootstrap
      assert.ok(p !== null && file.state.gen === 0, `kill ${k + 1} landed mid-bootstrap (checkpoint ${file.state.seq}, gen ${file.state.gen})`)
      assert.equal(file.rows.size, 0, 'no copy is readable before the swap')
      if (previous) {
        // Resumed from its last chunk, not started again: the same generation, begun at the same head.
        const was = previous.state.bootstrap as NonNullable<typeof p>
        assert.deepEqual([p.gen, p.s0, p.startedAt], [was.gen, was.s0, was.startedAt])
        assert.ok(p.afterKey !== null && was.afterKey !== null && p.afterKey > was.afterKey, `copied on from ${was.afterKey} to ${p.afterKey}`)
        assert.ok(child.lines().some((l) => JSON.stringify(l).includes('resuming the bootstrap')), 'it said it resumed the bootstrap')
      }
      previous = file
      seen.push(`bootstrap: copied up to ${p.afterKey}, s0 ${p.s0}, read head ${p.readHead}`)
    }

    // Live: each time once the checkpoint has moved past the last kill's, after a random pause.
    let last = 0
    for (let k = 0; k < options.liveKills; k++) {
      const child = started(start(owner.url, into))
      const since = last
      await until(async () => {
        const r = await report(into)
        return r.gen > 0 && r.checkpoint > since
      }, `the checkpoint moving past ${since}`)
      await delay(random.int(0, 300))
      await sigkill(child)
      const head = await owner.head()
      const file = await checkAfterKill(into, owner, `killed live (${k + 1})`, hook)
      assert.ok(file.state.seq >= last, 'the checkpoint never goes back')
      last = file.state.seq
      seen.push(`live: checkpoint ${last}, ${head - last} behind the owner just after the kill`)
    }

    // The owner stops; a last run catches up to the final head and stops cleanly.
    const head = await writer.stop()
    const child = started(start(owner.url, into))
    await until(async () => (await report(into)).checkpoint === head, `catching up to ${head}`, 30_000)
    child.process.kill('SIGTERM')
    const exit = await child.exited
    assert.equal(exit.code, 0, `stopped cleanly: ${JSON.stringify(child.lines().slice(-3))}`)
    await checkFinal(into, owner, head, hook)
    seen.push(`end: ${head} changes in ${writer.transactions} owner transactions while killing`)
    return seen
  } finally {
    // A failed check must not leave a replicator running or the owner writing into a closed store.
    for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL')
    await Promise.all(children.map((c) => c.exited))
    await writer.stop()
  }
}

describe('a replicator process killed with SIGKILL', () => {
  it('leaves the replica at a source transaction boundary, exact, after every kill; resumes; each change reaches the hook once', async () => {
    const random = seeded('replica-kill')
    const owner = await startOwner({ random: random.random, keys: 30_000 })
    // A big initial state, copied 100 rows per request: the bootstrap takes hundreds of chunks.
    await owner.write(40, 500, 500)
    const seen = await killAndCheck(owner, fixtureReplicator, { bootstrapKills: 2, liveKills: 4, hook: true, random })
    for (const line of seen) process.stderr.write(`# ${line}\n`)
  })

  it('the same holds for `tidemark replicate`', async () => {
    const random = seeded('replica-kill cli')
    const owner = await startOwner({ random: random.random, keys: 20_000 })
    await owner.write(30, 500, 500)
    const seen = await killAndCheck(owner, cliReplicator, { bootstrapKills: 1, liveKills: 2, hook: false, random })
    for (const line of seen) process.stderr.write(`# ${line}\n`)
  })
})
