import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { describe, it } from 'node:test'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import type { Change } from '../../src/protocol/types.js'
import { tmpDb } from '../helpers/tmp.js'
import { copyFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'

async function collect(it: AsyncIterable<Change[]>): Promise<Change[]> {
  const out: Change[] = []
  for await (const batch of it) out.push(...batch)
  return out
}

describe('SqliteSourceStore', () => {
  it('records API writes inside the owner transaction with tx boundaries', async () => {
    const path = tmpDb()
    const db = new Database(path)
    db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)')
    const source = new SqliteSource(db)
    const customers = source.feed('customers')
    const insert = db.prepare('INSERT INTO customers (id, name) VALUES (?, ?)')
    db.transaction(() => {
      insert.run(1, 'Ada')
      customers.put('1', { id: 1, name: 'Ada' })
      insert.run(2, 'Bob')
      customers.put('2', { id: 2, name: 'Bob' })
    })()
    customers.put('3', { id: 3, name: 'Cy' })
    assert.throws(() =>
      db.transaction(() => {
        customers.put('4', { id: 4 })
        throw new Error('rollback')
      })(),
    )
    db.transaction(() => customers.delete('1'))()

    const store = SqliteSourceStore.open(path)
    const changes = await collect(store.changes('customers', 0))
    assert.deepEqual(
      changes.map((c) => [c.seq, c.key, c.op, c.tx]),
      [
        [1, '1', 'upsert', 2],
        [2, '2', 'upsert', 2],
        [3, '3', 'upsert', 3],
        [4, '1', 'delete', 4],
      ],
    )
    assert.deepEqual(changes[1]?.data, { id: 2, name: 'Bob' })
    const feed = await store.getFeed('customers')
    assert.equal(feed.head, 4)
    await store.maintain()
    const after = await store.getFeed('customers')
    assert.equal(after.keys, 2)
    assert.equal(after.digestSeq, 4)
    const snap = await store.snapshot('customers', null, 10)
    assert.deepEqual(snap.rows.map((r) => [r.key, r.seq]), [['2', 2], ['3', 3]])
    assert.equal(snap.done, true)
    await store.close()
    source.close()
    db.close()
  })

  it('captures a tracked table, including writes from another client', async () => {
    const path = tmpDb()
    const db = new Database(path)
    db.exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, "odd ""col""" TEXT); INSERT INTO customers VALUES (1,'a','x'),(2,'b',NULL)`)
    const store = SqliteSourceStore.open(path)
    const info = await store.track({ table: 'customers', keyColumn: 'id' })
    assert.equal(info.head, 2)
    db.exec(`UPDATE customers SET name='bb' WHERE id=2; DELETE FROM customers WHERE id=1; UPDATE customers SET id=5 WHERE id=2`)
    const changes = await collect(store.changes('customers', 0))
    assert.deepEqual(
      changes.map((c) => [c.seq, c.key, c.op, c.tx]),
      [[1, '1', 'upsert', 2], [2, '2', 'upsert', 2], [3, '2', 'upsert', 3], [4, '1', 'delete', 4], [5, '2', 'delete', 5], [6, '5', 'upsert', 6]],
    )
    assert.deepEqual(changes[5]?.data, { id: 5, name: 'bb', 'odd "col"': null })
    await store.close()
    db.close()
  })

  it('untrack then track again resynchronises the feed with the table', async () => {
    const path = tmpDb()
    const db = new Database(path)
    db.exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1,'a'),(2,'b')`)
    const store = SqliteSourceStore.open(path)
    await store.track({ table: 't', keyColumn: 'id' })
    await store.untrack('t')
    assert.equal((await store.getFeed('t')).tracked?.active, false)
    await assert.rejects(store.untrack('t'), /does not capture/)
    db.exec(`DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (3,'c')`)
    assert.equal((await store.getFeed('t')).head, 2)
    await store.track({ table: 't', keyColumn: 'id' })
    const changes = await collect(store.changes('t', 2))
    assert.deepEqual(changes.map((c) => [c.key, c.op, c.tx]), [['1', 'delete', 5], ['2', 'upsert', 5], ['3', 'upsert', 5]])
    const snap = await store.snapshot('t', null, 10)
    assert.deepEqual(snap.rows.map((r) => r.key), ['2', '3'])
    await store.ensureFeed('t', { retention: { changes: 100 } })
    assert.equal((await store.getFeed('t')).retention.changes, 100)
    await store.close()
    db.close()
  })

  it('never splits a transaction: a limit ends at a boundary, and a transaction longer than a page keeps its tx', async () => {
    const path = tmpDb()
    const store = SqliteSourceStore.open(path)
    await store.ensureFeed('f')
    await store.write('f', Array.from({ length: 2500 }, (_, i) => ({ op: 'upsert' as const, key: `k${i}`, data: i })))
    await store.write('f', [{ op: 'upsert', key: 'x', data: 1 }, { op: 'delete', key: 'k1' }])
    const first = await collect(store.changes('f', 0, { limit: 10 }))
    assert.equal(first.length, 2500)
    assert.ok(first.every((c) => c.tx === 2500))
    const rest = await collect(store.changes('f', 2500, { limit: 1 }))
    assert.deepEqual(rest.map((c) => [c.seq, c.tx]), [[2501, 2502], [2502, 2502]])
    await store.close()
  })

  it('applies retention by count, never beyond the digest, and reports log-truncated', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    await store.ensureFeed('f', { retention: { changes: 3 } })
    for (let i = 0; i < 10; i++) await store.write('f', [{ op: 'upsert', key: `k${i % 4}`, data: i }])
    await store.write('f', [{ op: 'delete', key: 'k0' }])
    const result = await store.maintain()
    assert.equal(result.pruned, 8)
    const info = await store.getFeed('f')
    assert.equal(info.minSeq, 9)
    assert.equal(info.head, 11)
    await assert.rejects(collect(store.changes('f', 7)), { code: 'log-truncated' })
    assert.equal((await collect(store.changes('f', 8))).length, 3)
    // State is never dropped by retention.
    const snap = await store.snapshot('f', null, 100)
    assert.deepEqual(snap.rows.map((r) => r.key), ['k1', 'k2', 'k3'])
    await store.close()
  })

  it('gives a feed a new epoch when the file is restored from an older copy', async () => {
    const path = tmpDb()
    let store = SqliteSourceStore.open(path)
    await store.ensureFeed('f')
    await store.write('f', [{ op: 'upsert', key: 'a', data: 1 }])
    await store.close()
    copyFileSync(path, `${path}.bak`)
    store = SqliteSourceStore.open(path)
    await store.write('f', [{ op: 'upsert', key: 'b', data: 2 }])
    const { epoch } = await store.getFeed('f')
    await store.maintain()
    await store.close()
    // Restore the backup (the marks file beside it is not part of it).
    copyFileSync(`${path}.bak`, path)
    rmSync(`${path}-wal`, { force: true })
    rmSync(`${path}-shm`, { force: true })
    store = SqliteSourceStore.open(path)
    const after = await store.getFeed('f')
    assert.equal(after.head, 1)
    assert.notEqual(after.epoch, epoch)
    await store.close()
  })

  it('refuses bad keys, data and feed names with clear errors', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    await assert.rejects(store.ensureFeed('../etc'), { code: 'bad-request' })
    await assert.rejects(store.getFeed('nope'), { code: 'unknown-feed' })
    await store.ensureFeed('f')
    await assert.rejects(store.write('f', [{ op: 'upsert', key: '', data: 1 }]), { code: 'bad-request' })
    await assert.rejects(store.write('f', [{ op: 'upsert', key: 'x'.repeat(600), data: 1 }]), { code: 'too-large' })
    await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: { n: 1n } as never }]), /not JSON-able/)
    await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: { d: new Date() } as never }]), /not JSON-able: Date/)
    await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: 'x'.repeat(1024 * 1024 + 1) }]), { code: 'too-large' })
    // A failed write leaves nothing behind.
    assert.equal((await store.getFeed('f')).head, 0)
    await store.close()
  })

  it('refuses a file that is not SQLite', async () => {
    const path = tmpDb()
    writeFileSync(path, randomBytes(8192))
    assert.throws(() => SqliteSourceStore.open(path), { code: 'not-a-store' })
  })
})
