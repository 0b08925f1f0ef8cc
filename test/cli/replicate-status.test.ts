import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { readReplicas, type ReplicaReport } from '../../src/store/sqlite/replica-report.js'
import { EXIT, TidemarkError } from '../../src/errors.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDir } from '../helpers/tmp.js'
import { collect, failsWith, ok, spawnTidemark, tidemark, type CliResult } from './run-cli.js'

/** A source with a `customers` feed served over HTTP in this process (optionally asking for a token). */
async function source(options: { token?: string } = {}) {
  const dir = tmpDir()
  const store = SqliteSourceStore.open(join(dir, 'owner.db'))
  await store.ensureFeed('customers')
  const server = await createFeedServer({
    store,
    maintainEveryMs: 0,
    ...(options.token
      ? {
          authorize: ({ token }) => {
            if (token !== options.token) throw new TidemarkError('unauthorized', 'wrong token')
          },
        }
      : {}),
  })
  const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
  after(async () => {
    await server.close()
    await store.close()
  })
  const write = async (from: number, count: number): Promise<number> => {
    const seqs = await store.write(
      'customers',
      Array.from({ length: count }, (_, i) => ({ op: 'upsert' as const, key: `c${from + i}`, data: { name: `Customer ${from + i}` } })),
    )
    return seqs[seqs.length - 1] as number
  }
  return { dir, store, url, write, path: join(dir, 'owner.db') }
}

/** Starts `tidemark replicate` and waits for its "replicating" line. */
async function replicate(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawnTidemark(['replicate', ...args], { env })
  child.stdin?.end()
  const done = collect(child)
  await new Promise<void>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`replicate did not start: ${seen}`)), 15_000)
    child.stderr?.on('data', (d: Buffer | string) => {
      seen += String(d)
      if (/^tidemark replicating /m.test(seen)) {
        clearTimeout(timer)
        resolve()
      }
    })
    void done.then((r) => reject(new Error(`replicate exited ${r.code}: ${r.stderr}`)))
  })
  return { child, done }
}

/** Polls the replica file until `test` holds for its only replica. */
async function until(db: string, test: (r: ReplicaReport) => boolean, what: string): Promise<ReplicaReport> {
  const deadline = Date.now() + 20_000
  let last: unknown
  for (;;) {
    try {
      const [r] = await readReplicas(db)
      if (r && test(r)) return r
      last = r
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`)
    await delay(50)
  }
}

/**
 * A replicator that could not start: exit `code`, and besides its JSON log lines exactly one line
 * for people, `tidemark: …`, matching `message`.
 */
function refused(result: CliResult, code: number, message: RegExp): void {
  assert.equal(result.code, code, `expected exit ${code}, got ${result.code}; stderr: ${result.stderr}`)
  const human = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))
  assert.equal(human.length, 1, `not one line: ${JSON.stringify(result.stderr)}`)
  assert.match(human[0]!, /^tidemark: /)
  assert.match(human[0]!, message)
}

function phaseLines(result: CliResult): string[] {
  return result.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { component?: string; to?: string })
    .filter((l) => l.component === 'replica' && l.to !== undefined)
    .map((l) => l.to as string)
}

/** A free loopback port: listened on, then let go (for a server that starts later). */
async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

async function listening(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  after(() => new Promise((resolve) => server.close(resolve)))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('tidemark replicate', () => {
  it('bootstraps, follows live, is seen by status, and stops on SIGTERM at a boundary with exit 0', async () => {
    const src = await source()
    await src.write(0, 120)
    const into = join(src.dir, 'replica.db')
    const { child, done } = await replicate([src.url, 'customers', '--into', into, '--snapshot-chunk', '50', '--head-check', '200ms'])
    await until(into, (r) => r.checkpoint === 120 && r.phase !== 'stopped', 'the bootstrap')
    const head = await src.write(120, 30)
    const live = await until(into, (r) => r.checkpoint === head, 'the live change')
    assert.equal(live.phase, 'live')
    assert.equal(live.replicator?.pid, child.pid)
    assert.equal(live.keys, 150)

    const [status] = [ok(await tidemark(['status', into]))]
    assert.equal(status[0], `customers: feed "customers" from ${src.url}`)
    assert.match(status.join('\n'), new RegExp(`phase\\s+live \\(replicator pid ${child.pid} on `))
    assert.match(status.join('\n'), new RegExp(`checkpoint\\s+${head} \\(moved .* ago, at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)`))
    assert.match(status.join('\n'), /keys\s+150\n/)
    assert.match(status.join('\n'), /lag\s+none/)

    child.kill('SIGTERM')
    const result = await done
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(phaseLines(result).slice(0, 2), ['bootstrapping', 'catching-up'])
    assert.equal(phaseLines(result).at(-1), 'stopped')
    assert.doesNotMatch(result.stderr, /tidemark: (?!replicating)/)

    // The claim was released and the copy is readable with SQL.
    const [stopped] = await readReplicas(into)
    assert.equal(stopped?.phase, 'stopped')
    assert.equal(stopped?.replicator, null)
    const db = new Database(into, { readonly: true })
    assert.equal(db.prepare(`SELECT data ->> '$.name' FROM tidemark_replica_current WHERE name = 'customers' AND key = 'c7'`).pluck().get(), 'Customer 7')
    db.close()
    assert.match(ok(await tidemark(['status', into]))[1]!, /phase\s+stopped \(no replicator running\)/)
  })

  it('takes the token from TIDEMARK_TOKEN, and stops on SIGINT', async () => {
    const src = await source({ token: 's3cret' })
    const head = await src.write(0, 10)
    const into = join(src.dir, 'replica.db')
    const { child, done } = await replicate([src.url, 'customers', '--into', into, '--name', 'crm'], { TIDEMARK_TOKEN: 's3cret' })
    const r = await until(into, (s) => s.checkpoint === head && s.epoch !== null, 'the bootstrap')
    assert.equal(r.name, 'crm')
    child.kill('SIGINT')
    assert.equal((await done).code, 0)

    const fresh = join(src.dir, 'fresh.db')
    failsWith(await tidemark(['replicate', src.url, 'customers', '--into', fresh], { env: { TIDEMARK_TOKEN: 'guess' } }), EXIT.unauthorized, /wrong token/)
    failsWith(await tidemark(['replicate', src.url, 'customers', '--into', fresh, '--token', 'guess']), EXIT.unauthorized, /wrong token/)
    failsWith(await tidemark(['replicate', src.url, 'customers', '--into', fresh], { env: { TIDEMARK_TOKEN: '' } }), EXIT.unauthorized, /unauthorized|token/)
    assert.equal(existsSync(fresh), false)
  })

  it('waits for a feed server that is down, creating no replica file until it answers, then bootstraps', async () => {
    const dir = tmpDir()
    const port = await freePort()
    const into = join(dir, 'replica.db')
    const child = spawnTidemark(['replicate', `http://127.0.0.1:${port}`, 'customers', '--into', into])
    child.stdin?.end()
    const done = collect(child)
    let seen = ''
    child.stderr?.on('data', (d: Buffer | string) => (seen += String(d)))
    try {
      const deadline = Date.now() + 20_000
      while ((seen.match(/does not answer yet/g) ?? []).length < 2 && Date.now() < deadline) await delay(50)
      assert.match(seen, /does not answer yet/)
      assert.equal(existsSync(into), false, 'a replica file was made before the source answered')

      const store = SqliteSourceStore.open(join(dir, 'owner.db'))
      await store.ensureFeed('customers')
      await store.write('customers', [{ op: 'upsert', key: 'c1', data: { name: 'Ada' } }])
      const server = await createFeedServer({ store, maintainEveryMs: 0 })
      after(async () => {
        await server.close()
        await store.close()
      })
      await server.listen({ host: '127.0.0.1', port })
      const r = await until(into, (s) => s.epoch !== null && s.checkpoint === 1, 'the bootstrap once the server is up')
      assert.equal(r.keys, 1)
    } finally {
      child.kill('SIGTERM')
    }
    assert.equal((await done).code, EXIT.ok)
  })

  it(`stops with exit ${EXIT.config} on an HTTP server that is not a tidemark feed server, creating nothing`, async () => {
    const url = await listening(
      createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' })
        res.end('<!doctype html><title>Welcome to nginx</title>')
      }),
    )
    const into = join(tmpDir(), 'replica.db')
    refused(await tidemark(['replicate', url, 'customers', '--into', into]), EXIT.config, /without a tidemark-protocol header: is this a tidemark feed server\?/)
    assert.equal(existsSync(into), false)
  })

  it(`refuses a replica another replicator holds (exit ${EXIT.conflict}), and a file that is not SQLite (exit ${EXIT.unavailable})`, async () => {
    const src = await source()
    await src.write(0, 5)
    const into = join(src.dir, 'replica.db')
    const first = await replicate([src.url, 'customers', '--into', into])
    await until(into, (s) => s.epoch !== null, 'the bootstrap')
    refused(await tidemark(['replicate', src.url, 'customers', '--into', into]), EXIT.conflict, new RegExp(`is being replicated by pid ${first.child.pid}.*stop it first`))
    first.child.kill('SIGTERM')
    assert.equal((await first.done).code, 0)

    // Mistakes that asking again cannot fix fail at once, before any replica file is made.
    const fresh = join(src.dir, 'fresh.db')
    failsWith(await tidemark(['replicate', src.url, 'nosuch', '--into', fresh]), EXIT.unknownFeed, /unknown feed "nosuch"/)
    assert.equal(existsSync(fresh), false)

    const text = join(src.dir, 'notes.txt')
    writeFileSync(text, 'not a database, just a long enough text file to not look like an empty one\n'.repeat(20))
    failsWith(await tidemark(['replicate', src.url, 'customers', '--into', text]), EXIT.unavailable, /is not a SQLite database/)
    failsWith(await tidemark(['replicate', 'ftp://x', 'customers', '--into', into]), EXIT.usage, /starts with http:\/\/ or https:\/\//)
    failsWith(await tidemark(['replicate', src.url, 'customers']), EXIT.usage, /required option '--into <db>' not specified/)
    failsWith(await tidemark(['replicate', src.url, 'customers', '--into', into, '--head-check', 'soon']), EXIT.usage, /argument 'soon' is invalid\. Invalid duration/)
  })
})

describe('tidemark status', () => {
  it('shows a bootstrap in progress, with and without a live replicator', async () => {
    const dir = tmpDir()
    const path = join(dir, 'replica.db')
    const store = SqliteReplicaStore.open(path)
    await store.claim('customers', 'customers', 'http://127.0.0.1:7480')
    await store.beginBootstrap('customers', 'e1', 500)
    const rows = Array.from({ length: 40 }, (_, i) => ({ key: `k${String(i).padStart(3, '0')}`, seq: i + 1, data: { i } }))
    await store.writeSnapshotChunk('customers', rows, { afterKey: 'k039', readHead: 510, done: false })

    const [running] = await readReplicas(path)
    assert.equal(running?.phase, 'bootstrapping')
    assert.equal(running?.replicator?.pid, process.pid)
    assert.deepEqual(
      { copied: running?.bootstrap?.copied, afterKey: running?.bootstrap?.afterKey, readHead: running?.bootstrap?.readHead, s0: running?.bootstrap?.s0 },
      { copied: 40, afterKey: 'k039', readHead: 510, s0: 500 },
    )
    const text = ok(await tidemark(['status', path])).join('\n')
    assert.match(text, new RegExp(`phase\\s+bootstrapping \\(replicator pid ${process.pid} on `))
    assert.match(text, /bootstrap\s+40 keys copied, up to key "k039"; began at head 500 (just now|[\d.]+ s ago), at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z(, [\d,]+ keys\/s so far)?, snapshot read up to 510, log applied to 500/)
    assert.match(text, /epoch\s+- \(no copy yet\)/)

    await store.close() // releases the claim: as after a replicator was stopped mid-bootstrap
    const [json] = JSON.parse(ok(await tidemark(['status', path, '--json', '--name', 'customers'])).join('\n')) as ReplicaReport[]
    assert.equal(json?.phase, 'stopped')
    assert.equal(json?.bootstrap?.copied, 40)
    // Times are ISO 8601, not epoch milliseconds.
    assert.match(String(json?.bootstrap?.startedAt), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.match(ok(await tidemark(['status', path])).join('\n'), /phase\s+stopped mid-bootstrap \(resumes from its last chunk/)
  })

  it('shows the lag behind the last head heard', async () => {
    const path = join(tmpDir(), 'replica.db')
    let now = 1_000_000
    const store = SqliteReplicaStore.open(path, { clock: () => now })
    await store.claim('customers', 'customers', 'http://127.0.0.1:7480')
    await store.beginBootstrap('customers', 'e1', 0)
    await store.writeSnapshotChunk('customers', [], { afterKey: null, readHead: 0, done: true })
    await store.finishBootstrap('customers')
    await store.noteSourceHead('customers', 12)
    now += 5000
    await store.close()
    const [r] = await readReplicas(path, { now: now + 2500 })
    assert.deepEqual(r?.lag, { changes: 12, seconds: 7.5 })
    assert.equal(r?.phase, 'stopped')
  })

  it('says clearly when the file is not a replica, and creates nothing', async () => {
    const src = await source()
    await src.write(0, 3)
    failsWith(await tidemark(['status', src.path]), 3, /owner\.db is not a tidemark replica: it has no replica tables \(it is a source: list its feeds with `tidemark feeds`\)/)
    const db = new Database(src.path, { readonly: true })
    assert.equal(db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name LIKE 'tidemark_replica%'`).pluck().get(), 0)
    db.close()

    const dir = tmpDir()
    const missing = join(dir, 'missing.db')
    failsWith(await tidemark(['status', missing]), 3, /no such database file/)
    assert.equal(existsSync(missing), false)

    const plain = join(dir, 'plain.db')
    new Database(plain).exec('CREATE TABLE t (x)')
    failsWith(await tidemark(['status', plain]), 3, /plain\.db is not a tidemark replica: it has no replica tables$/m)

    const empty = join(dir, 'empty.db')
    await SqliteReplicaStore.open(empty).close()
    failsWith(await tidemark(['status', empty]), EXIT.usage, /empty\.db holds no replica yet: start one with `tidemark replicate <url> <feed> --into /)

    const text = join(dir, 'notes.txt')
    writeFileSync(text, 'hello\n'.repeat(200))
    failsWith(await tidemark(['status', text]), EXIT.unavailable, /is not a SQLite database/)

    const one = join(dir, 'one.db')
    const store = SqliteReplicaStore.open(one)
    await store.claim('a', 'customers', 'http://x')
    await store.close()
    failsWith(await tidemark(['status', one, '--name', 'b']), EXIT.usage, /no replica "b" in .*one\.db: it holds "a"/)
  })
})
