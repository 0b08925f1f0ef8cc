import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { describe, it } from 'node:test'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import type { Change } from '../../src/protocol/types.js'
import { tmpDb } from '../helpers/tmp.js'

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
})
