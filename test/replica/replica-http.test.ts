/**
 * A replica over real HTTP (HttpFeedSource, long-poll) against a real feed server on 127.0.0.1
 * while the owner writes, and against what goes wrong between them: the server vanishing
 * mid-response and coming back on the same port, a proxy that answers 503, cuts NDJSON mid-line,
 * sends garbage, repeats or skips a seq in a page, a reset of the feed's epoch while a slow link
 * holds a snapshot chunk back; and replica files that cannot be used: not SQLite, bound to another
 * feed or source, held by another replicator process.
 *
 * Whatever happens, the replica file is checked as the kill tests check it: the checkpoint ends a
 * source transaction and the rows are the source's state at that checkpoint (test/fixtures/replica-e2e.ts).
 */
import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { readReplicas } from '../../src/store/sqlite/replica-report.js'
import { ConflictError, EXIT, TidemarkError } from '../../src/errors.js'
import type { Seq } from '../../src/protocol/types.js'
import { createReplica, type ReplicaStatus } from '../../src/replica/replica.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { Logger } from '../../src/store/store.js'
import { Backoff } from '../../src/transport/backoff.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { collect, spawnTidemark, tidemark, type CliResult } from '../cli/run-cli.js'
import { faultyProxy, type Fault } from '../fixtures/faulty-proxy.js'
import { assertExactAtCheckpoint, readReplicaFile, seeded, startOwner, until, type Owner } from '../fixtures/replica-e2e.js'

const FEED = 'customers'

interface LogLine {
  msg?: string
  retryInMs?: number
  [field: string]: unknown
}

/** A replica of `feed` at `url` in the SQLite file `path`, with its warnings recorded. */
function httpReplica(
  url: string,
  path: string,
  options: { feed?: string; name?: string; snapshotChunk?: number; pullLimit?: number; backoff?: Backoff } = {},
) {
  const warns: LogLine[] = []
  const logger: Logger = {
    debug() {},
    info() {},
    warn: (obj, msg) => warns.push({ ...obj, msg }),
    error: (obj, msg) => warns.push({ ...obj, msg }),
  }
  const source = new HttpFeedSource(url, { timeoutMs: 5000 })
  const store = SqliteReplicaStore.open(path)
  const pullLimit = options.pullLimit ?? 1000
  const replica = createReplica({
    source,
    feed: options.feed ?? FEED,
    store,
    logger,
    snapshotChunk: options.snapshotChunk ?? 1000,
    pullLimit,
    transport: new LongPollTransport(source, { waitMs: 300, limit: pullLimit }),
    backoff: options.backoff ?? new Backoff({ baseMs: 10, capMs: 100 }),
    ...(options.name !== undefined ? { name: options.name } : {}),
  })
  after(async () => {
    await replica.stop()
    await store.close()
    await source.close()
  })
  return { replica, store, source, warns, retries: () => warns.filter((w) => w.retryInMs !== undefined) }
}

/** The file after a run: exact at its checkpoint, at the owner's (stopped) head, with the owner's digest. */
async function assertEqualToSource(path: string, owner: Owner, head: Seq, name = FEED): Promise<void> {
  const file = await readReplicaFile(path, name)
  await assertExactAtCheckpoint(file, owner.log, 'at the end')
  assert.equal(file.state.seq, head)
  assert.equal(file.state.epoch, (await owner.store.getFeed(FEED)).epoch)
  assert.deepEqual(file.digest, await owner.store.digestLeaves(FEED), "the replica's digest is the owner's")
}

/**
 * Makes the owner's feed server vanish — every socket destroyed, nothing listening — once the first
 * piece of the body of the first request that `match`es has been handed to the network; the rest
 * of that body is held back meanwhile. Resolves with the request's URL once the server is gone.
 */
function vanishMidResponse(owner: Owner, match: (url: string) => boolean): Promise<string> {
  const http = owner.http
  return new Promise((resolve) => {
    const onRequest = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
      const url = req.url ?? ''
      if (!match(url)) return
      http.off('request', onRequest)
      const write = res.write.bind(res) as (chunk: unknown, callback: () => void) => boolean
      let first = true
      res.write = ((chunk: unknown) => {
        // Later pieces are not written: the pipe waits for a 'drain' that never comes.
        if (!first) return false
        first = false
        return write(chunk, () => void owner.vanish().then(() => resolve(url)))
      }) as typeof res.write
    }
    http.prependListener('request', onRequest)
  })
}

const disconnected = (replica: { status(): ReplicaStatus }, message: RegExp) => (): ReplicaStatus | false => {
  const s = replica.status()
  return !s.connected && s.lastError !== null && message.test(s.lastError) && s
}

describe('a replica over HTTP, when the server goes away', () => {
  it('retries with capped backoff while the server is gone mid-listing, says it is disconnected, and completes exact when it is back on the same port', async () => {
    const random = seeded('replica-http vanish')
    const owner = await startOwner({ random: random.random, keys: 40_000 })
    await owner.write(20, 1000, 1000)
    const writer = owner.writeContinuously(5)
    const path = join(owner.dir, 'replica.db')
    // random() just under 1: each pause is its ceiling minus one, so the sequence is known.
    const r = httpReplica(owner.url, path, { snapshotChunk: 5000, pullLimit: 5000, backoff: new Backoff({ baseMs: 20, capMs: 160, random: () => 0.999 }) })

    // 1. Mid-snapshot: the second chunk of 5,000 rows is cut after its first piece.
    let snapshots = 0
    const cut = vanishMidResponse(owner, (url) => url.includes('/snapshot') && ++snapshots === 2)
    const running = r.replica.run()
    assert.match(await cut, /\/snapshot\?after=/)
    const down = await until(disconnected(r.replica, /./), 'the replica to notice')
    assert.equal(down.phase, 'bootstrapping')
    assert.match(down.lastError as string, /connection to http:\/\/127\.0\.0\.1:\d+ broke mid-response to GET \/v1\/feeds\/customers\/snapshot/)
    await until(() => r.retries().length >= 5, 'five retries')
    assert.match(r.replica.status().lastError as string, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(GET \/v1\/feeds\/customers\/snapshot\)/)
    const meanwhile = await readReplicaFile(path, FEED)
    assert.deepEqual([meanwhile.state.gen, meanwhile.rows.size, meanwhile.state.bootstrap?.afterKey !== null], [0, 0, true], 'the first chunk is kept, nothing is readable yet')
    await owner.comeBack()
    await until(() => r.replica.status().phase === 'live' && r.replica.status().connected, 'live again')
    assert.deepEqual(
      r.retries().slice(0, 5).map((w) => w.retryInMs),
      [19, 39, 79, 159, 159],
      'capped exponential backoff: 20, 40, 80, 160, 160 ms ceilings',
    )
    assert.equal(r.replica.status().lastError, null)
    await assertExactAtCheckpoint(await readReplicaFile(path, FEED), owner.log, 'after the snapshot was cut')

    // 2. Mid-changes listing: stopped, 10,000 changes behind, restarted; the catch-up listing is cut.
    await r.replica.stop()
    await running
    const cp = (await r.store.state(FEED))?.seq as Seq
    await owner.write(10, 1000, 1000)
    const before = r.retries().length
    const cutChanges = vanishMidResponse(owner, (url) => url.includes(`/changes?after=${cp}&`))
    const again = r.replica.run()
    await cutChanges
    await until(disconnected(r.replica, /broke mid-response to GET \/v1\/feeds\/customers\/changes/), 'the cut listing')
    await until(() => r.retries().length >= before + 3, 'three retries')
    const cutFile = await readReplicaFile(path, FEED)
    await assertExactAtCheckpoint(cutFile, owner.log, 'while the server is away')
    assert.equal(cutFile.state.seq, cp, 'nothing of the cut listing was applied')
    await owner.comeBack()
    const head = await writer.stop()
    await r.replica.caughtUp(head)
    assert.equal(r.replica.status().connected, true)
    await r.replica.stop()
    await again
    await assertEqualToSource(path, owner, head)
  })
})

describe('a replica over HTTP behind a faulty proxy', () => {
  const FAULTS: Array<[Fault, RegExp]> = [
    ['503', /answered 503: "<html><body><h1>503 Service Unavailable/],
    ['cut', /response cut after \d+ (changes|rows) \(mid-line|not a JSON line/],
    ['garbage', /not a JSON line: "<html>502 Bad Gateway|is not UTF-8/],
    ['repeat', /the changes listing after \d+ repeats seq \d+ where \d+ was due/],
    ['skip', /the changes listing after \d+ skips to seq \d+ where \d+ was due|end line says last \d+, but the last change sent was \d+/],
  ]

  it('applies nothing from a spoiled answer, reports connected: false with the error meanwhile, and ends equal to the source', async () => {
    const random = seeded('replica-http faults')
    const owner = await startOwner({ random: random.random, keys: 5000 })
    await owner.write(10, 300, 300)
    const proxy = await faultyProxy(owner.url, random.random)
    const writer = owner.writeContinuously(5)
    const path = join(owner.dir, 'replica.db')
    const r = httpReplica(proxy.url, path, { pullLimit: 200 })
    const running = r.replica.run()
    await until(() => r.replica.status().phase === 'live', 'live')

    for (const [fault, message] of FAULTS) {
      proxy.fault = fault
      const s = await until(disconnected(r.replica, message), `the replica to report "${fault}"`)
      const first = await readReplicaFile(path, FEED)
      await assertExactAtCheckpoint(first, owner.log, `with fault ${fault}`)
      // It goes on asking, and every answer is spoiled: the checkpoint stays where it was.
      const spoiled = proxy.spoiled
      await until(() => proxy.spoiled >= spoiled + 3, `three more spoiled answers (${fault})`)
      const later = await readReplicaFile(path, FEED)
      await assertExactAtCheckpoint(later, owner.log, `with fault ${fault}, later`)
      assert.equal(later.state.seq, first.state.seq, `nothing applied from answers spoiled by "${fault}"`)
      assert.equal(r.replica.status().connected, false)
      assert.ok(s.phase === 'live' || s.phase === 'catching-up', `${fault}: still following (${s.phase})`)

      proxy.fault = 'none'
      await until(() => {
        const now = r.replica.status()
        return now.connected && now.lastError === null && now.checkpoint > later.state.seq
      }, `recovery from "${fault}"`)
    }
    const head = await writer.stop()
    await r.replica.caughtUp(head)
    await r.replica.stop()
    await running
    await assertEqualToSource(path, owner, head)
    assert.deepEqual(
      r.replica.status().history.map((h) => h.to),
      ['bootstrapping', 'catching-up', 'live', 'stopped'],
      'transient faults never made it re-bootstrap',
    )
  })

  it('re-bootstraps when the epoch is reset while a slow link holds a snapshot chunk back, and ends exact at the new epoch', async () => {
    const random = seeded('replica-http epoch')
    const owner = await startOwner({ random: random.random, keys: 20_000 })
    await owner.write(10, 1000, 1000)
    const oldEpoch = (await owner.store.getFeed(FEED)).epoch
    const proxy = await faultyProxy(owner.url, random.random)
    proxy.snapshotDelayMs = 20
    let reset: Promise<CliResult> | undefined
    proxy.onSnapshotHeld = async (n) => {
      // The fourth chunk was read at the old epoch; while it is held, `tidemark reset-epoch` runs.
      if (n === 4) await (reset = tidemark(['reset-epoch', owner.path, FEED]))
    }
    const writer = owner.writeContinuously(5)
    const path = join(owner.dir, 'replica.db')
    const r = httpReplica(proxy.url, path, { snapshotChunk: 500 })
    const running = r.replica.run()
    await until(() => r.replica.status().phase === 'live', 'live', 30_000)
    const result = await (reset as Promise<CliResult>)
    assert.equal(result.code, 0, result.stderr)
    const newEpoch = (await owner.store.getFeed(FEED)).epoch
    assert.notEqual(newEpoch, oldEpoch)
    assert.match(result.stdout, new RegExp(`epoch ${oldEpoch} -> ${newEpoch}`))
    const again = r.replica.status().history.find((h) => h.from === 'bootstrapping' && h.to === 'bootstrapping')
    assert.ok(again, `bootstrapping → bootstrapping in ${JSON.stringify(r.replica.status().history)}`)
    assert.match(again.reason, new RegExp(`has epoch ${newEpoch}, not ${oldEpoch}`))
    assert.equal(r.replica.status().epoch, newEpoch)

    const head = await writer.stop()
    await r.replica.caughtUp(head)
    await r.replica.stop()
    await running
    await assertEqualToSource(path, owner, head)
  })
})

describe('replica files that cannot be used', () => {
  it('a file that is not SQLite, or is corrupt, fails with not-a-store and is left as it was', async () => {
    const random = seeded('replica-http not-a-store')
    const owner = await startOwner({ random: random.random, keys: 2000 })
    await owner.write(5, 400, 400)
    const text = join(owner.dir, 'notes.txt')
    writeFileSync(text, 'these are my notes, not a database\n'.repeat(200))
    const notes = readFileSync(text)
    assert.throws(() => SqliteReplicaStore.open(text), (e: unknown) => {
      assert.ok(e instanceof TidemarkError)
      assert.equal(e.code, 'not-a-store')
      assert.match(e.message, /notes\.txt is not a SQLite database/)
      return true
    })
    assert.deepEqual(readFileSync(text), notes)

    // A replica file whose pages past the first were overwritten: not-a-store at open.
    const path = join(owner.dir, 'replica.db')
    const r = httpReplica(owner.url, path)
    const running = r.replica.run()
    await r.replica.caughtUp()
    await r.replica.stop()
    await running
    await r.store.close()
    const db = new Database(path)
    db.pragma('wal_checkpoint(TRUNCATE)')
    db.close()
    const fd = openSync(path, 'r+')
    writeSync(fd, Buffer.alloc(statSync(path).size - 4096, 0xab), 0, undefined, 4096)
    closeSync(fd)
    assert.throws(() => SqliteReplicaStore.open(path), (e: unknown) => e instanceof TidemarkError && e.code === 'not-a-store' && /replica\.db is corrupt/.test(e.message))
  })

  it(
    'a replica file found corrupt while applying stops the replica with not-a-store, instead of retrying as if the source were away',
    async () => {
      const random = seeded('replica-http corrupt')
      const owner = await startOwner({ random: random.random, keys: 5000 })
      await owner.write(10, 500, 500)
      const path = join(owner.dir, 'replica.db')
      const first = httpReplica(owner.url, path)
      const running = first.replica.run()
      await first.replica.caughtUp()
      await first.replica.stop()
      await running
      await first.store.close()
      // The leaf pages of the copy's rows overwritten: the file still opens, and the rows are garbage.
      const db = new Database(path)
      db.pragma('wal_checkpoint(TRUNCATE)')
      const pageSize = db.pragma('page_size', { simple: true }) as number
      const leaves = db.prepare(`SELECT pageno FROM dbstat WHERE name = 'tidemark_replica_rows' AND pagetype = 'leaf'`).pluck().all() as number[]
      db.close()
      assert.ok(leaves.length > 10)
      const fd = openSync(path, 'r+')
      for (const page of leaves) writeSync(fd, Buffer.alloc(pageSize, 0xab), 0, pageSize, (page - 1) * pageSize)
      closeSync(fd)
      await owner.write(20, 200, 200)

      const r = httpReplica(owner.url, path)
      const again = r.replica.run()
      again.catch(() => {})
      await until(() => r.replica.phase === 'failed' || r.replica.status().lastError !== null, 'the replica to hit the corruption')
      const status = r.replica.status()
      await r.replica.stop()
      assert.equal(status.phase, 'failed', `phase ${status.phase}, connected ${status.connected}, last error: ${status.lastError}`)
      await assert.rejects(again, (e: unknown) => e instanceof TidemarkError && e.code === 'not-a-store')
    },
  )

  it('a file bound to another feed or source fails with a conflict naming both, and is left as it was', async () => {
    const random = seeded('replica-http conflict')
    const a = await startOwner({ random: random.random, keys: 1000 })
    const b = await startOwner({ random: random.random, keys: 1000 })
    await a.store.ensureFeed('orders')
    const head = await a.write(5, 100, 100)
    await b.write(5, 100, 100)
    const path = join(a.dir, 'replica.db')
    const first = httpReplica(a.url, path)
    const running = first.replica.run()
    await first.replica.caughtUp()
    await first.replica.stop()
    await running

    const other = httpReplica(b.url, path)
    await assert.rejects(other.replica.run(), (e: unknown) => {
      assert.ok(e instanceof ConflictError)
      assert.match(e.message, new RegExp(`copies feed "customers" from ${a.url}, not feed "customers" from ${b.url}`))
      return true
    })
    assert.equal(other.replica.phase, 'failed')
    assert.match(other.replica.status().lastError as string, new RegExp(`from ${a.url}, not feed "customers" from ${b.url}`))

    const orders = httpReplica(a.url, path, { feed: 'orders', name: FEED })
    await assert.rejects(orders.replica.run(), (e: unknown) => e instanceof ConflictError && new RegExp(`copies feed "customers" from ${a.url}, not feed "orders" from ${a.url}`).test(e.message))

    // The CLI says the same in one line, with the conflict's exit status.
    const cli = await tidemark(['replicate', b.url, FEED, '--into', path])
    assert.equal(cli.code, EXIT.conflict, cli.stderr)
    const human = cli.stderr.split('\n').filter((l) => l.startsWith('tidemark: '))
    assert.equal(human.length, 1, cli.stderr)
    assert.match(human[0] as string, new RegExp(`copies feed "customers" from ${a.url}, not feed "customers" from ${b.url}.*force`))

    const [report] = await readReplicas(path)
    assert.deepEqual([report?.feed, report?.source, report?.replicator], [FEED, a.url, null], 'still bound to the first source, unclaimed')
    await assertEqualToSource(path, a, head)
  })

  it('a second replicator process on the same file refuses while the first runs, and takes over at once once it is killed', async () => {
    const random = seeded('replica-http two replicators')
    const owner = await startOwner({ random: random.random, keys: 3000 })
    await owner.write(5, 500, 500)
    const writer = owner.writeContinuously(5)
    const path = join(owner.dir, 'replica.db')
    const first = spawnTidemark(['replicate', owner.url, FEED, '--into', path])
    const firstDone = collect(first)
    after(() => void first.kill('SIGKILL'))
    await until(async () => {
      const [s] = await readReplicas(path)
      return s?.phase === 'live' && s.replicator?.pid === first.pid
    }, 'the first replicator live')

    const second = await tidemark(['replicate', owner.url, FEED, '--into', path])
    assert.equal(second.code, EXIT.conflict, second.stderr)
    const human = second.stderr.split('\n').filter((l) => l.startsWith('tidemark: '))
    assert.equal(human.length, 1, second.stderr)
    assert.match(human[0] as string, new RegExp(`replica "customers" in .*replica\\.db is being replicated by pid ${first.pid} on host .*: stop it first`))

    // The first goes on, undisturbed.
    const mark = await owner.head()
    await until(async () => {
      const [s] = await readReplicas(path)
      return s !== undefined && s.checkpoint >= mark && s.replicator?.pid === first.pid
    }, 'the first replicator moving on')
    first.kill('SIGKILL')
    assert.equal((await firstDone).signal, 'SIGKILL')
    await assertExactAtCheckpoint(await readReplicaFile(path, FEED), owner.log, 'after the first was killed')

    // A dead process's claim is taken over at once, without waiting for its lease to run out.
    const third = spawnTidemark(['replicate', owner.url, FEED, '--into', path])
    const thirdDone = collect(third)
    after(() => void third.kill('SIGKILL'))
    const head = await writer.stop()
    await until(async () => {
      const [s] = await readReplicas(path)
      return s?.checkpoint === head && s.replicator?.pid === third.pid
    }, 'the third replicator caught up')
    third.kill('SIGTERM')
    const done = await thirdDone
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stderr, new RegExp(`taking over from pid ${first.pid} on host [^ ]+ \\(that process is gone\\)`))
    await assertEqualToSource(path, owner, head)
  })
})

describe("a consumer's start-up before its feed server", () => {
  it('caughtUp() waits while the server is down, resolves once it is up, and rejects on what retrying cannot fix', async () => {
    const owner = await startOwner({ random: seeded('replica-http start-up').random, keys: 500 })
    await owner.write(3, 100, 100)
    const head = (await owner.store.getFeed(FEED)).head
    await owner.vanish()
    const r = httpReplica(owner.url, join(owner.dir, 'replica.db'))
    const running = r.replica.run()
    let settled: string | undefined
    const caught = r.replica.caughtUp().then(
      (seq) => void (settled = `resolved at ${seq}`),
      (error: unknown) => void (settled = `rejected: ${(error as Error).message}`),
    )
    await until(() => r.retries().length >= 4, 'the replica retrying while the server is down')
    assert.equal(settled, undefined, 'caughtUp() neither resolved nor rejected while the source was down')
    // Bounded by its signal: a timeout rejects with the signal's reason, and nothing else.
    await assert.rejects(r.replica.caughtUp(undefined, AbortSignal.timeout(50)), { name: 'TimeoutError' })
    await owner.comeBack()
    await caught
    assert.equal(settled, `resolved at ${head}`)
    await r.replica.stop()
    await running
    await assertEqualToSource(join(owner.dir, 'replica.db'), owner, head)

    // A feed that does not exist is not a start-up order: caughtUp() and run() both stop with it.
    const wrong = httpReplica(owner.url, join(owner.dir, 'wrong.db'), { feed: 'nope', name: 'nope' })
    const failed = wrong.replica.run()
    await assert.rejects(wrong.replica.caughtUp(), { code: 'unknown-feed' })
    await assert.rejects(failed, { code: 'unknown-feed' })

  })
})
