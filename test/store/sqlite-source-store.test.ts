import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { describe, it } from 'node:test'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import type { Change } from '../../src/protocol/types.js'
import { tmpDb } from '../helpers/tmp.js'
import { sourceStoreContract } from './contract/source-store-contract.js'
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

  it("track follows SQLite's primary keys: INTEGER PRIMARY KEY and WITHOUT ROWID keys are NOT NULL, other primary keys may hold NULL", async () => {
    const path = tmpDb()
    const db = new Database(path)
    db.exec(`CREATE TABLE rowid_key (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE text_key (code TEXT PRIMARY KEY, v TEXT);
             CREATE TABLE no_rowid (code TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
             CREATE TABLE pair (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b));
             INSERT INTO text_key VALUES (NULL, 'x'), (NULL, 'y')`)
    db.close()
    const store = SqliteSourceStore.open(path)
    try {
      await store.track({ table: 'rowid_key', keyColumn: 'id' })
      await assert.rejects(store.track({ table: 'text_key', keyColumn: 'code' }), { code: 'bad-request', message: /has nullable column "code": a key must be NOT NULL/ })
      await store.track({ table: 'no_rowid', keyColumn: 'code' })
      await assert.rejects(store.track({ table: 'pair', keyColumn: 'a' }), /not its primary key or unique.*key it by "a,b" \(primary key\)/)
      await store.track({ table: 'pair', keyColumn: 'a,b' })
      assert.deepEqual((await store.listFeeds()).map((f) => f.name), ['no_rowid', 'pair', 'rowid_key'])
    } finally {
      await store.close()
    }
  })

  it('refuses a file that is not SQLite', async () => {
    const path = tmpDb()
    writeFileSync(path, randomBytes(8192))
    assert.throws(() => SqliteSourceStore.open(path), { code: 'not-a-store' })
  })
})

sourceStoreContract({
  name: 'sqlite',
  capturedTransactions: false,
  async open() {
    const path = tmpDb()
    const store = SqliteSourceStore.open(path)
    const db = new Database(path)
    db.pragma('busy_timeout = 10000')
    return {
      store,
      async sql(statements: string) {
        db.transaction(() => db.exec(statements)).immediate()
      },
      async triggers(table: string) {
        return db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY 1`).pluck().all(table) as string[]
      },
      async tidemarkRows() {
        return db
          .prepare(
            `SELECT (SELECT count(*) FROM tidemark_feeds) + (SELECT count(*) FROM tidemark_changes) + (SELECT count(*) FROM tidemark_state) + (SELECT count(*) FROM tidemark_digest)`,
          )
          .pluck()
          .get() as number
      },
      async close() {
        await store.close()
        db.close()
      },
    }
  },
})
