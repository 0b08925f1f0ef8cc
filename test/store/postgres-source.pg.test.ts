import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { PostgresSource } from '../../src/store/postgres/postgres-source.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { openSourceStore } from '../../src/store/open.js'
import { pgDatabase, pgServer, withDatabase } from '../helpers/pg.js'
import { collect } from './contract/source-store-contract.js'

async function fresh(): Promise<{ url: string; pool: pg.Pool; store: PostgresSourceStore; close(): Promise<void> }> {
  const url = await pgDatabase()
  const pool = new pg.Pool({ connectionString: url })
  const store = await PostgresSourceStore.open(url)
  return {
    url,
    pool,
    store,
    async close() {
      await store.close()
      await pool.end()
    },
  }
}

describe('PostgreSQL source: the owner API and capture', () => {
  it('records changes inside the owner transaction: commit, rollback, savepoints, autocommit', async () => {
    const { pool, store, close } = await fresh()
    await pool.query('CREATE TABLE customers (id integer PRIMARY KEY, name text)')
    const source = await PostgresSource.attach(pool)
    const customers = await source.feed('customers')
    const client = await pool.connect()
    await client.query('BEGIN')
    await client.query(`INSERT INTO customers VALUES (1, 'Ada')`)
    await customers.put(client, '1', { id: 1, name: 'Ada' })
    await client.query('SAVEPOINT s')
    await customers.put(client, 'gone', { id: 0 })
    await client.query('ROLLBACK TO SAVEPOINT s')
    await customers.put(client, '2', { id: 2, name: 'Bob' })
    // Not yet committed: nothing to read.
    assert.equal((await store.getFeed('customers')).head, 0)
    await client.query('COMMIT')
    await customers.put(client, '3', { id: 3, name: 'Cy' })
    await client.query('BEGIN')
    await customers.put(client, '4', { id: 4 })
    await client.query('ROLLBACK')
    await customers.delete(client, '1')
    client.release()
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
    await assert.rejects(customers.put(pool, '', 1), { code: 'bad-request' })
    // After a commit, sequenced() gives a position at or above the change, with the head there.
    await customers.put(pool, '5', { id: 5 })
    assert.equal(await source.sequenced('customers'), 5)
    assert.equal(await source.sequenced('customers'), 5)
    assert.equal((await store.getFeed('customers')).head, 5)
    await assert.rejects(source.sequenced('nope'), { code: 'unknown-feed' })
    await close()
  })

  it('refuses the API on a captured feed, and a NULL key in a captured table', async () => {
    const { pool, store, close } = await fresh()
    await pool.query('CREATE TABLE t (id integer NOT NULL UNIQUE, v text)')
    await store.track({ table: 't', keyColumn: 'id' })
    // track refuses a nullable key; the trigger still refuses a NULL the table was altered to allow.
    await pool.query('ALTER TABLE t ALTER COLUMN id DROP NOT NULL')
    const source = await PostgresSource.attach(pool)
    await assert.rejects(source.feed('t'), /captured from table "t"/)
    await assert.rejects(pool.query(`INSERT INTO t VALUES (NULL, 'x')`), /key column id is NULL/)
    assert.equal((await store.getFeed('t')).head, 0)
    await close()
  })

  it('a captured table altered (column added, dropped, renamed): changes keep flowing with the new shape', async () => {
    const { pool, store, close } = await fresh()
    await pool.query(`CREATE TABLE t (id integer PRIMARY KEY, a text, b text); INSERT INTO t VALUES (1, 'a', 'b')`)
    await store.track({ table: 't', keyColumn: 'id' })
    await pool.query(`ALTER TABLE t ADD COLUMN c integer DEFAULT 7`)
    await pool.query(`UPDATE t SET a = 'a2' WHERE id = 1`)
    await pool.query(`ALTER TABLE t DROP COLUMN b`)
    await pool.query(`INSERT INTO t VALUES (2, 'x', 8)`)
    await pool.query(`ALTER TABLE t RENAME COLUMN a TO aa`)
    await pool.query(`DELETE FROM t WHERE id = 1`)
    await pool.query(`UPDATE t SET aa = 'y' WHERE id = 2`)
    const changes = await collect(store.changes('t', 0))
    assert.deepEqual(
      changes.map((c) => [c.key, c.op, c.data]),
      [
        ['1', 'upsert', { id: 1, a: 'a', b: 'b' }],
        ['1', 'upsert', { id: 1, a: 'a2', b: 'b', c: 7 }],
        ['2', 'upsert', { id: 2, a: 'x', c: 8 }],
        ['1', 'delete', undefined],
        ['2', 'upsert', { id: 2, aa: 'y', c: 8 }],
      ],
    )
    await close()
  })

  it('a TRUNCATE of a captured table deletes every key in the truncating transaction; untrack stops it', async () => {
    const { pool, store, close } = await fresh()
    await pool.query(`CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`)
    await store.track({ table: 't', keyColumn: 'id' })
    // Rolled back: nothing recorded.
    await pool.query(`BEGIN; TRUNCATE t; ROLLBACK`).catch(() => {})
    const client = await pool.connect()
    await client.query('BEGIN')
    await client.query('TRUNCATE t')
    await client.query(`INSERT INTO t VALUES (2, 'new')`)
    await client.query('COMMIT')
    client.release()
    const changes = await collect(store.changes('t', 0))
    assert.deepEqual(
      changes.map((c) => [c.key, c.op, c.tx]),
      [
        ['1', 'upsert', 3],
        ['2', 'upsert', 3],
        ['3', 'upsert', 3],
        ['1', 'delete', 7],
        ['2', 'delete', 7],
        ['3', 'delete', 7],
        ['2', 'upsert', 7],
      ],
    )
    await store.maintain()
    assert.equal((await store.getFeed('t')).keys, 1)
    const chunk = await store.snapshot('t', null, 100)
    assert.deepEqual(chunk.rows.map((r) => [r.key, r.data]), [['2', { id: 2, v: 'new' }]])
    await store.untrack('t')
    await pool.query('TRUNCATE t')
    assert.equal((await store.getFeed('t')).head, 7)
    const { rows: left } = await pool.query(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal`)
    assert.equal(left[0].n, 0)
    await close()
  })

  it('a table tracked before TRUNCATE was captured gets its trigger when the schema is upgraded (schema 2)', async () => {
    const { url, pool, store, close } = await fresh()
    await pool.query(`CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
    await pool.query(`CREATE TABLE gone (id integer PRIMARY KEY)`)
    await store.track({ table: 't', keyColumn: 'id' })
    await store.track({ table: 'gone', keyColumn: 'id' })
    await store.close()
    // As an older tidemark left it: no TRUNCATE trigger, schema 1; one tracked table dropped since.
    const truncateTriggers = async (): Promise<number> =>
      (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 't'::regclass AND tgname LIKE 'tidemark_truncate_%'`)).rows[0]?.n ?? -1
    await pool.query(`DROP TABLE gone`)
    const { rows } = await pool.query<{ tgname: string }>(`SELECT tgname FROM pg_trigger WHERE tgrelid = 't'::regclass AND tgname LIKE 'tidemark_truncate_%'`)
    await pool.query(`DROP TRIGGER "${rows[0]?.tgname}" ON t`)
    await pool.query(`UPDATE tidemark.meta SET value = '1' WHERE name = 'schema'`)
    assert.equal(await truncateTriggers(), 0)
    const upgraded = await PostgresSourceStore.open(url)
    try {
      assert.equal(await truncateTriggers(), 1)
      await pool.query('TRUNCATE t')
      const changes = await collect(upgraded.changes('t', 0))
      assert.deepEqual(changes.slice(-2).map((c) => [c.key, c.op]), [['1', 'delete'], ['2', 'delete']])
    } finally {
      await upgraded.close()
      await close().catch(() => {})
    }
  })

  it('long-polls on several feeds: a write from psql (no tidemark code runs) wakes the waiter of its feed only, through the watcher', async () => {
    const { pool, store, close } = await fresh()
    await pool.query('CREATE TABLE a (id integer PRIMARY KEY); CREATE TABLE b (id integer PRIMARY KEY)')
    await store.track({ table: 'a', keyColumn: 'id' })
    await store.track({ table: 'b', keyColumn: 'id' })
    const onA = store.waitForChanges('a', 0, { timeoutMs: 10_000 })
    const onB = store.waitForChanges('b', 0, { timeoutMs: 700 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    await pool.query('INSERT INTO a VALUES (1), (2)')
    assert.equal(await onA, 2)
    assert.equal(await onB, 0)
    await close()
  })

  it('a transaction of 100,000 rows is sequenced whole and read in bounded pages', async () => {
    const { pool, store, close } = await fresh()
    await pool.query('CREATE TABLE big (id integer PRIMARY KEY, payload text)')
    await store.track({ table: 'big', keyColumn: 'id' })
    await pool.query(`INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g`)
    await pool.query(`INSERT INTO big VALUES (0, 'after')`)
    global.gc?.()
    const before = process.memoryUsage().heapUsed
    let count = 0
    let largest = 0
    let peak = 0
    for await (const batch of store.changes('big', 0)) {
      largest = Math.max(largest, batch.length)
      for (const c of batch) {
        count++
        assert.equal(c.tx, c.seq <= 100_000 ? 100_000 : 100_001)
      }
      peak = Math.max(peak, process.memoryUsage().heapUsed - before)
    }
    assert.equal(count, 100_001)
    assert.ok(largest <= 1000, `a batch of ${largest} changes`)
    // 100,000 changes of ~230 bytes are ~25 MB of text: a reader holding them all would show it.
    assert.ok(peak < 20 * 1024 * 1024, `reading grew the heap by ${Math.round(peak / 1e6)} MB`)
    const info = await store.getFeed('big')
    assert.equal(info.head, 100_001)
    await store.maintain()
    assert.equal((await store.getFeed('big')).keys, 100_001)
    await close()
  })
})

describe('PostgreSQL source: bad locations', () => {
  it('wrong user, database, host or port: store-unavailable, and never the password in the message', async () => {
    const server = await pgServer()
    const u = new URL(server)
    const cases = [
      `postgres://nosuchuser:s3cret-pw@${u.host}/postgres`,
      withDatabase(server, 'tidemark_no_such_db').replace('postgres@', 'postgres:s3cret-pw@'),
      `postgres://postgres:s3cret-pw@127.0.0.1:1/postgres`,
    ]
    for (const url of cases) {
      const error = await openSourceStore(url).then(
        () => assert.fail(`${url} opened`),
        (e: unknown) => e as { code: string; message: string },
      )
      assert.equal(error.code, 'store-unavailable', error.message)
      assert.doesNotMatch(error.message, /s3cret/)
      assert.doesNotMatch(JSON.stringify(error), /s3cret/)
    }
  })

  it('a store whose connections are terminated keeps answering with fresh ones', async () => {
    const { url, store, close } = await fresh()
    await store.ensureFeed('f')
    await store.write('f', [{ op: 'upsert', key: 'a', data: 1 }])
    const waiting = store.waitForChanges('f', 1, { timeoutMs: 5000 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const admin = new pg.Client({ connectionString: url })
    await admin.connect()
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
    await admin.end()
    // The first query may meet a dead pooled connection; the pool replaces it.
    let ok = false
    for (let i = 0; i < 5 && !ok; i++) {
      try {
        await store.write('f', [{ op: 'upsert', key: 'b', data: 2 }])
        ok = true
      } catch (error) {
        assert.equal((error as { code?: string }).code, 'store-unavailable')
      }
    }
    assert.ok(ok)
    assert.equal(await waiting, 2)
    assert.equal((await collect(store.changes('f', 0))).length, 2)
    await close()
  })
})
