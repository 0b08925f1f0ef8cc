import assert from 'node:assert/strict'
import { it } from 'node:test'
import { execSql as sql } from '../../bench/postgres/sql.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { pgDatabase, withDatabase } from '../helpers/pg.js'

it('a database restored from a copy gets new epochs on every feed (once, however many servers look); a restart keeps them', async () => {
  const url = await pgDatabase()
  const store = await PostgresSourceStore.open(url)
  await store.ensureFeed('a')
  await store.write('a', [{ op: 'upsert', key: 'k', data: 1 }])
  await store.ensureFeed('b')
  await store.write('b', [{ op: 'upsert', key: 'k', data: 2 }])
  const before = { a: (await store.getFeed('a')).epoch, b: (await store.getFeed('b')).epoch }
  assert.deepEqual((await store.maintain()).reset, [])
  await store.close()

  // A restart: same database, same identity.
  const again = await PostgresSourceStore.open(url)
  assert.deepEqual((await again.maintain()).reset, [])
  assert.equal((await again.getFeed('a')).epoch, before.a)
  await again.close()

  // "Restored": the same content in another database (pg_dump | pg_restore gives a new oid too).
  const name = `${new URL(url).pathname.slice(1)}_restored`
  const copy = withDatabase(url, name)
  await sql(withDatabase(url, 'postgres'), `CREATE DATABASE ${name} TEMPLATE ${new URL(url).pathname.slice(1)}`)
  try {
    // Two servers start on it at once: both see the new epochs, only one made them.
    const [one, two] = await Promise.all([PostgresSourceStore.open(copy), PostgresSourceStore.open(copy)])
    const after = { a: (await one.getFeed('a')).epoch, b: (await two.getFeed('b')).epoch }
    assert.notEqual(after.a, before.a)
    assert.notEqual(after.b, before.b)
    assert.equal((await two.getFeed('a')).epoch, after.a)
    assert.deepEqual((await one.maintain()).reset, [])
    assert.deepEqual((await two.maintain()).reset, [])
    // The rows are all still there: only the epoch moved.
    assert.equal((await one.getFeed('a')).head, 1)
    await one.close()
    await two.close()
  } finally {
    await sql(withDatabase(url, 'postgres'), `DROP DATABASE IF EXISTS ${name}`)
  }
})

it('a restore noticed by maintain() while a server runs: the feeds it names get new epochs', async () => {
  const url = await pgDatabase()
  const store = await PostgresSourceStore.open(url)
  await store.ensureFeed('a')
  await store.write('a', [{ op: 'upsert', key: 'k', data: 1 }])
  const epoch = (await store.getFeed('a')).epoch
  // What a restore into another cluster or timeline leaves behind: another recorded identity.
  await sql(url, `UPDATE tidemark.meta SET value = 'another:00000001:1' WHERE name = 'identity'`)
  assert.deepEqual((await store.maintain()).reset, ['a'])
  assert.notEqual((await store.getFeed('a')).epoch, epoch)
  assert.deepEqual((await store.maintain()).reset, [])
  await store.close()
})
