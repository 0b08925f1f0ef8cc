import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { RECONCILE_EXIT } from '../../src/cli/commands/reconcile.js'
import type { ReconcileRun } from '../../src/reconcile/run.js'
import { createReplica } from '../../src/replica/replica.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { EXIT } from '../../src/errors.js'
import { tmpDir } from '../helpers/tmp.js'
import { collect, ok, spawnTidemark, tidemark } from './run-cli.js'

/** A served source with 500 customers and a replica file caught up with it (no replicator running). */
async function servedPair() {
  const dir = tmpDir()
  const store = SqliteSourceStore.open(join(dir, 'owner.db'))
  await store.ensureFeed('customers')
  await store.write('customers', Array.from({ length: 500 }, (_, i) => ({ op: 'upsert' as const, key: `c${i}`, data: { name: `Customer ${i}` } })))
  const server = await createFeedServer({ store, maintainEveryMs: 0 })
  const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
  const db = join(dir, 'replica.db')
  const source = new HttpFeedSource(url)
  const replicaStore = SqliteReplicaStore.open(db)
  const replica = createReplica({ source, feed: 'customers', store: replicaStore })
  const running = replica.run()
  await replica.caughtUp()
  await replica.stop()
  await running
  await replicaStore.close()
  await source.close()
  after(async () => {
    await server.close()
    await store.close()
  })
  return { dir, db, url, store, server }
}

/** Writes a wrong version of `key` into the replica through its store, as a faulty writer would. */
async function corrupt(db: string, source: string, key: string): Promise<void> {
  const store = SqliteReplicaStore.open(db)
  const s = (await store.state('customers'))!
  await store.claim('customers', 'customers', source)
  await store.repair('customers', [{ key, row: { key, seq: 1, data: { name: 'wrong' } } }], { epoch: s.epoch!, seq: s.seq })
  await store.close()
}

describe('tidemark verify / repair', () => {
  it('exits 0 for an intact replica, checked in one round trip of about a kilobyte', async () => {
    const { db } = await servedPair()
    const lines = ok(await tidemark(['verify', db]))
    assert.match(lines[0] ?? '', /^intact: the replica equals the source at checkpoint 500$/)
    assert.match(lines[1] ?? '', / in 1 round trip\(s\), /)
    const run = JSON.parse(ok(await tidemark(['verify', db, '--json'])).join('\n')) as ReconcileRun
    assert.equal(run.outcome, 'intact')
    assert.ok(run.cost.bytesSent + run.cost.bytesReceived < 2048, `${run.cost.bytesSent} + ${run.cost.bytesReceived} bytes`)
  })

  it(`exits ${RECONCILE_EXIT.drift} on drift and names the key; repair fixes it and exits 0; status shows the runs`, async () => {
    const { db, url } = await servedPair()
    await corrupt(db, url, 'c42')
    const found = await tidemark(['verify', db])
    assert.equal(found.code, RECONCILE_EXIT.drift, found.stderr)
    assert.match(found.stdout, /^drift: 1 key\(s\) differ from the source at checkpoint 500/m)
    assert.match(found.stdout, /differs "c42"  source: seq 43, replica: seq 1/)

    const repaired = ok(await tidemark(['repair', db]))
    assert.match(repaired[0] ?? '', /^repaired 1 of 1 drifted key\(s\)/)
    ok(await tidemark(['verify', db]))
    const status = ok(await tidemark(['status', db])).join('\n')
    assert.match(status, /reconciled\s+intact — verify \(demand\)/)
  })

  it('needs --deep to see a row edited by hand', async () => {
    const { db } = await servedPair()
    const store = SqliteReplicaStore.open(db)
    store.db.prepare(`UPDATE tidemark_replica_rows SET data = '{"name":"edited"}' WHERE key = 'c7'`).run()
    await store.close()
    ok(await tidemark(['verify', db]))
    const deep = await tidemark(['verify', db, '--deep'])
    assert.equal(deep.code, RECONCILE_EXIT.drift, deep.stderr)
    assert.match(deep.stdout, /deep: the stored digest was wrong in 1 bucket\(s\), 1 row hash\(es\) stale/)
    assert.match(deep.stdout, /differs "c7"/)
    ok(await tidemark(['repair', db, '--deep']))
    ok(await tidemark(['verify', db, '--deep']))
  })

  it(`exits ${RECONCILE_EXIT.unchecked} with one line when it could not check`, async () => {
    const { db, dir, server } = await servedPair()
    const missing = await tidemark(['verify', join(dir, 'nope.db')])
    assert.equal(missing.code, RECONCILE_EXIT.unchecked)
    assert.match(missing.stderr, /^tidemark: [^\n]*nope\.db[^\n]*\n$/)
    const notReplica = await tidemark(['verify', join(dir, 'owner.db')])
    assert.equal(notReplica.code, RECONCILE_EXIT.unchecked)
    assert.match(notReplica.stderr, /is not a tidemark replica/)
    const owner = new Database(join(dir, 'owner.db'), { readonly: true })
    const tables = owner.prepare(`SELECT count(*) FROM sqlite_schema WHERE name LIKE 'tidemark_replica%'`).pluck().get()
    owner.close()
    assert.equal(tables, 0, 'verifying a file that is not a replica adds nothing to it')
    await server.close()
    const down = await tidemark(['verify', db])
    assert.equal(down.code, RECONCILE_EXIT.unchecked, down.stdout + down.stderr)
    assert.match(down.stdout, /^could not check: /)
  })

  it('asks a running replicator to do the run, and prints its record', async () => {
    const { db, url } = await servedPair()
    const child = spawnTidemark(['replicate', url, 'customers', '--into', db])
    child.stdin?.end()
    const done = collect(child)
    await new Promise<void>((resolve, reject) => {
      let seen = ''
      child.stderr?.on('data', (d: Buffer | string) => {
        seen += String(d)
        if (/^tidemark replicating /m.test(seen)) resolve()
      })
      void done.then((r) => reject(new Error(`replicate exited ${r.code}: ${r.stderr}`)))
    })
    try {
      const result = await tidemark(['repair', db, '--wait', '20s'])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /held by a running replicator: asking it to repair/)
      assert.match(result.stdout, /^intact/)
      // --source names another server (here one that is down): the replicator would check against
      // its own source, so the option cannot be honoured and is refused, not ignored.
      const [other, same] = await Promise.all([
        tidemark(['verify', db, '--source', 'http://127.0.0.1:9/', '--wait', '20s']),
        tidemark(['verify', db, '--source', `${url}/`, '--wait', '20s']),
      ])
      assert.equal(other.code, EXIT.usage, other.stdout)
      assert.doesNotMatch(other.stdout, /intact/)
      assert.match(other.stderr, /^tidemark: --source http:\/\/127\.0\.0\.1:9 cannot be honoured: replica "customers" is held by a running replicator/)
      // The replicator's own source, spelled with a trailing slash, is the same source: honoured.
      assert.equal(same.code, 0, same.stderr)
      assert.match(same.stdout, /^intact/)
    } finally {
      child.kill('SIGTERM')
      await done
    }
  })
})
