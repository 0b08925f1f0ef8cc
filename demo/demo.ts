/**
 * `npm run demo`: the whole story on one machine in about half a minute. An owner writes its
 * customers continuously through the source API; a feed server serves the feed; replica A follows
 * from the start through a broker that loses a message; replica B joins late as a real
 * `tidemark replicate` process, is killed mid-bootstrap and restarted; at the end both are compared
 * with the owner, by digest and row by row, at the same position. Everything printed is what was
 * observed: a check that fails says so, and the demo then ends with a non-zero exit.
 */
import type { Database, Statement } from 'better-sqlite3'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { readReplicas, type ReplicaReport } from '../src/store/sqlite/replica-report.js'
import { BadRequestError } from '../src/errors.js'
import type { Change } from '../src/protocol/types.js'
import { createReplica, type Replica } from '../src/replica/replica.js'
import type { Phase, PhaseChange } from '../src/replica/phase.js'
import { createFeedServer, type FeedServer } from '../src/server/feed-server.js'
import { openDatabase } from '../src/store/sqlite/database.js'
import { SqliteReplicaStore } from '../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../src/store/sqlite/sqlite-source-store.js'
import type { Logger } from '../src/store/store.js'
import { HttpFeedSource } from '../src/transport/http/http-feed-source.js'
import { ChildReplicator } from './child-replicator.js'
import { compareWithOwner, type Comparison } from './compare.js'
import { LossyBroker } from './lossy-broker.js'
import { n, Narrator, secs } from './narrator.js'
import { Owner } from './owner.js'

const FEED = 'customers'
const FILES = ['owner.db', 'replica-a.db', 'replica-b.db'].flatMap((f) => [f, `${f}-wal`, `${f}-shm`, `${f}-tidemark.json`]).concat('replica-b.log')

interface Scale {
  /** Customers written before anything else. */
  seed: number
  /** The owner's transactions per second while the demo runs. */
  rate: number
  /** Rows per snapshot request of replica B: small, so that its bootstrap takes visible time. */
  snapshotChunk: number
  /** Replica B is killed once it has copied this share of the customers. */
  killAt: number
  /** How long A runs live before its message is lost, and how long all run together at the end. */
  warmMs: number
  togetherMs: number
}

const FULL: Scale = { seed: 30_000, rate: 400, snapshotChunk: 500, killAt: 0.4, warmMs: 1500, togetherMs: 8000 }
const QUICK: Scale = { seed: 3_000, rate: 200, snapshotChunk: 50, killAt: 0.4, warmMs: 500, togetherMs: 1000 }

export interface DemoOptions {
  /** Where to put the files (created when missing); default: a new temporary folder. */
  dir?: string
  /** Keep the files at the end (default: remove what the demo created). */
  keep?: boolean
  /** Smaller numbers, for tests. */
  quick?: boolean
  /** How to start the tidemark CLI for replica B: the executable and its leading arguments. */
  cli: readonly string[]
  print: (line: string) => Promise<void> | void
  color: boolean
  /** Stops the demo (it cleans up and rejects with the signal's reason). */
  signal?: AbortSignal
}

export interface DemoResult {
  /** Both replicas equal the owner, by digest and row by row (and A's projection its table). */
  equal: boolean
  dir: string
  /** Each check with its verdict. */
  checks: Array<{ replica: string; check: string; equal: boolean }>
}

/** Collects what a replica logs, so that the demo can tell what it noticed (and print nothing else). */
class LogCapture implements Logger {
  readonly entries: Array<{ at: number; level: string; obj: Record<string, unknown>; msg: string }> = []
  debug(obj: object, msg = ''): void {
    this.add('debug', obj, msg)
  }
  info(obj: object, msg = ''): void {
    this.add('info', obj, msg)
  }
  warn(obj: object, msg = ''): void {
    this.add('warn', obj, msg)
  }
  error(obj: object, msg = ''): void {
    this.add('error', obj, msg)
  }
  private add(level: string, obj: object, msg: string): void {
    this.entries.push({ at: performance.now(), level, obj: obj as Record<string, unknown>, msg })
    if (this.entries.length > 10_000) this.entries.splice(0, 5_000)
  }
}

/** Runs the demo; resolves with the verdicts (rejects only when it could not run to the end). */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const scale = options.quick ? QUICK : FULL
  const signal = options.signal ?? new AbortController().signal
  const say = new Narrator(options.print, options.color)
  const started = performance.now()
  const timings: Array<[string, number]> = []
  const made = options.dir === undefined
  const dir = made ? mkdtempSync(join(tmpdir(), 'tidemark-demo-')) : resolve(options.dir as string)
  if (!made) {
    mkdirSync(dir, { recursive: true })
    const taken = FILES.filter((f) => existsSync(join(dir, f)))
    if (taken.length > 0) throw new BadRequestError(`${dir} already holds ${taken.join(', ')} from an earlier demo: remove them or choose another --dir`)
  }
  const path = (file: string): string => join(dir, file)
  const shown = (file: string): string => {
    const rel = relative(process.cwd(), path(file))
    return rel.startsWith('..') || rel === '' ? path(file) : rel
  }

  const closers: Array<() => unknown> = []
  const checks: DemoResult['checks'] = []
  try {
    await say.raw('tidemark demo: an owner that keeps writing, a feed server and two replicas, on SQLite.')
    await say.raw(say.dim(`Files in ${dir}${options.keep ? '' : ' (removed at the end; --keep keeps them)'}.`))

    // ── 1. the owner ────────────────────────────────────────────────────────────────────────────
    await say.heading('The owner')
    const owner = new Owner(path('owner.db'), FEED)
    closers.push(() => owner.close())
    let t = performance.now()
    owner.seed(scale.seed)
    timings.push([`seed ${n(scale.seed)} customers`, performance.now() - t])
    await say.say(`owner.db has a customers table. Its code writes each customer and,`)
    await say.say(`in the same transaction, the change: feed("customers").put(id, row).`)
    await say.say(`Seeded ${n(scale.seed)} customers in ${secs(performance.now() - t)}.`)

    const sourceStore = SqliteSourceStore.open(path('owner.db'), { create: false })
    closers.push(() => sourceStore.close())
    const server: FeedServer = await createFeedServer({ store: sourceStore })
    closers.push(() => server.close())
    const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
    await say.say(`A feed server serves the feed at ${url}.`)
    owner.start(scale.rate)
    closers.push(() => owner.stop())
    const writing = performance.now()
    await say.say(`From now on the owner writes ~${scale.rate} transactions a second: inserts,`)
    await say.say(`updates, deletes, some changing several customers at once.`)

    // ── 2. replica A ────────────────────────────────────────────────────────────────────────────
    await say.heading('Replica A, there from the start')
    const storeA = SqliteReplicaStore.open(path('replica-a.db'))
    closers.push(() => storeA.close())
    storeA.db.exec('CREATE TABLE IF NOT EXISTS customer_names (id TEXT PRIMARY KEY, name TEXT NOT NULL)')
    const sourceA = new HttpFeedSource(url)
    closers.push(() => sourceA.close())
    const broker = new LossyBroker(sourceA)
    const logA = new LogCapture()
    const phasesA = new PhaseWatch()
    const replicaA = createReplica({
      source: sourceA,
      feed: FEED,
      store: storeA,
      transport: broker,
      apply: projection(storeA.db),
      logger: logA,
      headCheckMs: 5000,
      onPhase: (change) => phasesA.add(change),
    })
    t = performance.now()
    const runningA = replicaA.run(signal)
    runningA.catch(() => {}) // A failure shows in the waits below (caughtUp rejects with it).
    closers.push(() => replicaA.stop())
    await phasesA.reach('live', replicaA, 60_000, signal)
    const bootA = performance.now() - t
    timings.push(['replica A: start to live', bootA])
    await say.say(`replica-a.db, in this process: bootstrapped and live in ${secs(bootA)}.`)
    await say.say(`A projection hook, run in each apply transaction, keeps its own`)
    await say.say(`table customer_names (id, name).`)
    await delay(scale.warmMs, undefined, { signal })

    await say.say(`Its changes come through a broker, which now loses one message:`)
    const lostAt = performance.now()
    const lost = await within(broker.dropNext(), 10_000, 'a delivery to lose', signal)
    await say.fault(`lost the delivery of changes ${n(lost.first)}–${n(lost.last)} (${lost.transactions} transaction${lost.transactions === 1 ? '' : 's'}).`)
    const noticed = await poll(
      async () => logA.entries.find((e) => e.at >= lostAt && typeof e.obj.highest === 'number' && typeof e.obj.checkpoint === 'number' && (e.obj.checkpoint as number) < lost.last),
      'replica A noticing the gap',
      10_000,
      signal,
    ).catch(() => undefined)
    const healed = await within(replicaA.caughtUp(lost.last, signal), 10_000, 'replica A healing the gap', signal)
    const healMs = performance.now() - lostAt
    if (noticed) {
      await say.say(`Replica A noticed: the next delivery did not follow its checkpoint`)
      await say.say(`${n(noticed.obj.checkpoint as number)}, so it pulled the missing changes from the log.`)
    } else {
      await say.say(`Replica A did not log a gap (the lost changes came back another way).`)
    }
    await say.good(`checkpoint now ${n(healed)}, past the lost ${n(lost.last)}: nothing missing.`)
    timings.push(['replica A: lost message healed', healMs])

    // ── 3. replica B ────────────────────────────────────────────────────────────────────────────
    await say.heading('Replica B, joining late, in its own process')
    const bPath = path('replica-b.db')
    const bLog = ChildReplicator.logFile(path('replica-b.log'))
    closers.push(() => new Promise<void>((done) => bLog.end(done)))
    const args = ['replicate', url, FEED, '--into', bPath, '--snapshot-chunk', String(scale.snapshotChunk)]
    await say.say(`$ tidemark replicate ${url} ${FEED} \\`)
    await say.say(`      --into replica-b.db --snapshot-chunk ${scale.snapshotChunk}`)
    const readB = async (): Promise<ReplicaReport | undefined> => (await readReplicas(bPath).catch(() => []))[0]
    let b = new ChildReplicator(options.cli, args, bLog)
    closers.push(() => b.kill('SIGKILL'))
    t = performance.now()
    const customers = owner.stats.customers
    const target = Math.round(customers * scale.killAt)
    await poll(
      async () => {
        const r = await readB()
        if (r === undefined) return undefined
        if (r.bootstrap === null) return r.epoch !== null ? r : undefined
        return r.bootstrap.snapshotDone || r.bootstrap.copied >= target ? r : undefined
      },
      'replica B bootstrapping',
      30_000,
      signal,
      10,
    )
    await b.kill('SIGKILL')
    const killed = await poll(readB, 'reading replica B after the kill', 10_000, signal)
    const untilKill = performance.now() - t
    timings.push(['replica B: start to kill', untilKill])
    const kp = killed.bootstrap
    const midway = kp !== null && !kp.snapshotDone
    if (midway) {
      await say.fault(`killed it (SIGKILL) mid-bootstrap, ${secs(untilKill)} after it started:`)
      await say.say(`it had copied ${n(kp.copied)} of ~${n(customers)} customers, up to key "${kp.afterKey}".`)
    } else {
      await say.fault(`killed it (SIGKILL) ${secs(untilKill)} after it started — too late for mid-copy:`)
      await say.say(kp ? `it had copied the whole snapshot and was applying the log.` : `it had finished its bootstrap (checkpoint ${n(killed.checkpoint)}).`)
    }

    b = new ChildReplicator(options.cli, args, bLog)
    t = performance.now()
    const first = await b.waitFor((l) => l.component === 'replica' && l.from === 'idle', 'its start', 30_000, signal)
    const takeover = b.lines.find((l) => l.component === 'store' && /taking over/.test(l.msg ?? ''))
    await say.say(`Restarted it (pid ${b.pid})${takeover ? ": it took over the dead process's claim at once," : ','}`)
    const resumedLog = first.to === 'bootstrapping' && /resuming the bootstrap/.test(first.msg ?? '')
    if (kp !== null) {
      // The same generation (and start) as before the kill, past where it was: it resumed.
      const next = await poll(
        async () => {
          const r = await readB()
          if (r === undefined) return undefined
          if (r.bootstrap === null) return r.epoch !== null && r.gen !== killed.gen ? r : undefined
          return r.bootstrap.copied !== kp.copied || r.bootstrap.afterKey !== kp.afterKey || r.bootstrap.seq !== kp.seq ? r : undefined
        },
        'replica B going on',
        30_000,
        signal,
        10,
      )
      const sameGen = next.bootstrap ? next.bootstrap.gen === kp.gen && next.bootstrap.startedAt === kp.startedAt : next.gen === kp.gen
      const resumed = resumedLog && sameGen
      checks.push({ replica: 'B', check: 'resumed its bootstrap', equal: resumed })
      if (resumed && midway) await say.good(`and resumed after key "${kp.afterKey}", keeping the ${n(kp.copied)} it had: not from scratch.`)
      else if (resumed) await say.good(`and resumed where it was (the snapshot already copied): not from scratch.`)
      else await say.bad(`but began its bootstrap again from scratch (${first.msg ?? 'no reason logged'}).`)
    } else {
      await say.say(`and went on from its checkpoint ${n(killed.checkpoint)}.`)
    }
    await b.waitFor((l) => l.component === 'replica' && l.to === 'live', 'going live', 60_000, signal)
    const restartToLive = performance.now() - t
    timings.push(['replica B: restart to live', restartToLive])
    const liveB = await readB()
    await say.say(`Replica B is live at seq ${n(liveB?.checkpoint ?? 0)}, ${secs(restartToLive)} after the restart.`)

    // ── 4. all together ─────────────────────────────────────────────────────────────────────────
    await say.heading('All three running')
    const end = performance.now() + scale.togetherMs
    const every = Math.max(500, Math.floor(scale.togetherMs / 4))
    while (performance.now() < end) {
      await delay(Math.min(every, Math.max(0, end - performance.now())), undefined, { signal })
      const head = (await sourceStore.getFeed(FEED)).head
      const a = replicaA.status().checkpoint
      const bb = (await readB())?.checkpoint ?? 0
      await say.say(`owner at seq ${n(head)}   A at ${n(a)}   B at ${n(bb)}`)
    }

    // ── 5. the verdict ──────────────────────────────────────────────────────────────────────────
    await say.heading('Are the replicas equal to the owner?')
    owner.stop()
    const wrote = performance.now() - writing
    const finalHead = (await sourceStore.getFeed(FEED)).head
    const s = owner.stats
    await say.say(`Stopped the owner at seq ${n(finalHead)}: ${n(s.transactions)} transactions (${n(s.multiRow)} multi-row),`)
    await say.say(`${n(s.changes)} changes in ${secs(wrote)}, ${n(Math.round(s.transactions / (wrote / 1000)))} transactions a second.`)
    t = performance.now()
    await within(replicaA.caughtUp(finalHead, signal), 30_000, 'replica A reaching the head', signal)
    await poll(async () => ((await readB())?.checkpoint ?? 0) >= finalHead || undefined, 'replica B reaching the head', 30_000, signal, 10)
    const catchUp = performance.now() - t
    timings.push(['both at the head after the last write', catchUp])
    await say.say(`Both replicas reached seq ${n(finalHead)} within ${secs(catchUp)} of the last write.`)
    const exitB = await b.kill('SIGTERM')

    t = performance.now()
    const cmpA = await compareWithOwner(sourceStore, FEED, storeA, FEED)
    const dbB = openDatabase(bPath, { create: false, readonly: true })
    closers.push(() => dbB.close())
    const cmpB = await compareWithOwner(sourceStore, FEED, SqliteReplicaStore.attach(dbB), FEED)
    const names = compareProjection(owner.names(), storeA.db)
    timings.push(['comparing', performance.now() - t])

    await report(say, 'Replica A', cmpA, checks)
    const projOk = names.differing === 0
    checks.push({ replica: 'A', check: 'projection', equal: projOk })
    await say.say(`  customer_names ${say.verdict(projOk)} to the owner's customers table (${n(names.compared)} rows)`)
    await report(say, 'Replica B', cmpB, checks)
    await say.say(
      exitB.code === 0 ? say.dim(`  (stopped with SIGTERM at a transaction boundary: exit 0)`) : `  stopped with SIGTERM: exit ${exitB.signal ?? exitB.code}`,
    )

    // ── 6. drift nobody announced ───────────────────────────────────────────────────────────────
    await say.heading('Drift nobody announced')
    t = performance.now()
    const plain = await replicaA.reconcile({ mode: 'verify' })
    await say.say(
      `Replica A compared its digest with the owner's: ${plain.outcome}, in ${plain.cost.roundTrips} round trip${plain.cost.roundTrips === 1 ? '' : 's'}` +
        ` and ${n(plain.cost.bytesSent + plain.cost.bytesReceived)} bytes (${secs(performance.now() - t)}).`,
    )
    const victim = storeA.db
      .prepare('SELECT key FROM tidemark_replica_current WHERE name = ? ORDER BY key LIMIT 1 OFFSET 3')
      .pluck()
      .get(FEED) as string
    // What an operator's stray UPDATE does: the copy and the projection change, the log knows nothing.
    storeA.db
      .prepare(
        `UPDATE tidemark_replica_rows SET data = json_set(data, '$.name', 'Mallory')
         WHERE name = ? AND key = ? AND gen = (SELECT gen FROM tidemark_replica_replicas WHERE name = ?)`,
      )
      .run(FEED, victim, FEED)
    storeA.db.prepare(`UPDATE customer_names SET name = 'Mallory' WHERE id = ?`).run(victim)
    await say.fault(`edited customer ${victim} by hand in replica-a.db (its row and its customer_names`)
    await say.say(`entry): no change announced, nothing in the log, the digest unaware.`)
    t = performance.now()
    const deep = await replicaA.reconcile({ mode: 'repair', deep: true })
    const found = deep.drift.some((d) => d.key === victim) && deep.repaired >= 1
    await say.say(`$ tidemark repair replica-a.db --deep   ${say.dim('(here: replica.reconcile(), in the replicator)')}`)
    const wrong = deep.digestRepair?.buckets ?? 0
    await say.say(`recomputed A's digest from its rows (${wrong} bucket${wrong === 1 ? '' : 's'} wrong), then compared it with the`)
    await say.say(`owner's in ${deep.cost.roundTrips} round trips and ${n(deep.cost.bytesSent + deep.cost.bytesReceived)} bytes (${secs(performance.now() - t)}):`)
    const after = await compareWithOwner(sourceStore, FEED, storeA, FEED)
    const namesAfter = compareProjection(owner.names(), storeA.db)
    const repairedOk = found && after.rowsEqual && after.digestEqual && namesAfter.differing === 0
    checks.push({ replica: 'A', check: 'drift repaired', equal: repairedOk })
    if (repairedOk) {
      await say.good(`drifted: customer ${victim}; rewritten from the owner through the projection hook —`)
      await say.say(`replica A and customer_names equal the owner again.`)
    } else {
      await say.bad(`the repair did not bring replica A back to the owner (${deep.outcome}: ${deep.drifted} drifted, ${deep.repaired} repaired).`)
    }
    timings.push(['drift found and repaired', performance.now() - t])
    await replicaA.stop()

    // ── timings and what next ───────────────────────────────────────────────────────────────────
    timings.push(['the whole demo', performance.now() - started])
    await say.heading('Timings', false)
    const width = Math.max(...timings.map(([label]) => label.length))
    for (const [label, ms] of timings) await say.say(`${label.padEnd(width)}  ${secs(ms).padStart(6)}`)

    await say.heading('What next', false)
    const kept = options.keep === true
    const at = (file: string): string => (kept ? shown(file) : `demo/${file}`)
    const next: Array<[string, string]> = [
      ...(kept ? [] : [['npm run demo -- --dir demo --keep', 'the same, keeping the files'] as [string, string]]),
      [`tidemark status ${at('replica-b.db')}`, "a replica's phase, checkpoint and lag"],
      [`tidemark serve ${at('owner.db')}`, 'then open http://127.0.0.1:7480/'],
      [`tidemark replicate http://127.0.0.1:7480 ${FEED} --into mine.db`, ''],
    ]
    const w = Math.max(...next.filter(([, why]) => why !== '').map(([c]) => c.length))
    for (const [command, why] of next) await say.say(why ? `${command.padEnd(w)}  ${say.dim(`# ${why}`)}` : command)

    const equal = checks.every((c) => c.equal)
    return { equal, dir, checks }
  } finally {
    for (const close of closers.reverse()) {
      try {
        await close()
      } catch {
        // Closing what is left; the first error (if any) is the one that matters.
      }
    }
    if (!options.keep) {
      if (made) rmSync(dir, { recursive: true, force: true })
      else for (const f of FILES) rmSync(join(dir, f), { force: true })
    }
  }
}

async function report(say: Narrator, title: string, c: Comparison, checks: DemoResult['checks']): Promise<void> {
  const replica = title.replace('Replica ', '')
  checks.push({ replica, check: 'digest', equal: c.digestEqual }, { replica, check: 'rows', equal: c.rowsEqual })
  await say.raw('')
  await say.say(`${title} at seq ${n(c.replica.seq)} (owner: ${n(c.owner.seq)}), ${n(c.replica.count)} customers`)
  const digest = c.digestEqual
    ? `(${n(c.owner.count)} rows, sum ${c.owner.sum.slice(0, 12)}… on both sides)`
    : `(owner ${n(c.owner.count)} rows, sum ${c.owner.sum.slice(0, 12)}…; replica ${n(c.replica.count)}, ${c.replica.sum.slice(0, 12)}…)`
  await say.say(`  digest ${say.verdict(c.digestEqual)} ${digest}`)
  const rows = c.rowsEqual
    ? `(${n(c.rows.compared)} rows compared one by one)`
    : `(${n(c.rows.differing)} of ${n(c.rows.compared)} differ${c.rows.firstDifference ? `; first: ${c.rows.firstDifference}` : ''})`
  await say.say(`  rows   ${say.verdict(c.rowsEqual)} ${rows}`)
}

/** The projection hook of replica A: customer_names follows the feed inside each apply transaction. */
function projection(db: Database): (change: Change, tx: Database) => void {
  let upsert: Statement | undefined
  let remove: Statement | undefined
  return (change, tx) => {
    if (tx !== db) throw new Error('the projection hook runs on the replica store\'s own connection')
    if (change.op === 'upsert') {
      upsert ??= db.prepare('INSERT INTO customer_names (id, name) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name')
      upsert.run(change.key, (change.data as { name: string }).name)
    } else {
      remove ??= db.prepare('DELETE FROM customer_names WHERE id = ?')
      remove.run(change.key)
    }
  }
}

function compareProjection(owner: Map<string, string>, db: Database): { compared: number; differing: number } {
  let compared = 0
  let differing = 0
  const seen = new Set<string>()
  for (const r of db.prepare('SELECT id, name FROM customer_names').iterate() as IterableIterator<{ id: string; name: string }>) {
    compared++
    seen.add(r.id)
    if (owner.get(r.id) !== r.name) differing++
  }
  for (const id of owner.keys()) {
    if (!seen.has(id)) {
      compared++
      differing++
    }
  }
  return { compared, differing }
}

/** Remembers a replica's phase changes and waits for one. */
class PhaseWatch {
  private readonly seen: PhaseChange[] = []

  add(change: PhaseChange): void {
    this.seen.push(change)
  }

  async reach(phase: Phase, replica: Replica<Database>, timeoutMs: number, signal: AbortSignal): Promise<void> {
    await poll(
      async () => {
        if (replica.phase === 'failed') throw new Error(`replica A failed: ${replica.status().lastError ?? 'no reason given'}`)
        return this.seen.some((c) => c.to === phase) || undefined
      },
      `replica A going ${phase}`,
      timeoutMs,
      signal,
    )
  }
}

/** Calls `fn` every `everyMs` until it returns something other than undefined. */
async function poll<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs: number, signal: AbortSignal, everyMs = 20): Promise<T> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    signal.throwIfAborted()
    const value = await fn()
    if (value !== undefined) return value
    if (performance.now() > deadline) throw new Error(`the demo waited ${timeoutMs / 1000} s for ${what} in vain`)
    await delay(everyMs, undefined, { signal })
  }
}

/** `promise`, or an error naming `what` once `timeoutMs` have passed. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string, signal: AbortSignal): Promise<T> {
  const timeout = new AbortController()
  const onAbort = (): void => timeout.abort()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([
      promise,
      delay(timeoutMs, undefined, { signal: timeout.signal }).then(() => {
        throw new Error(`the demo waited ${timeoutMs / 1000} s for ${what} in vain`)
      }),
    ])
  } finally {
    signal.removeEventListener('abort', onAbort)
    timeout.abort()
  }
}
