import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import { describe, it } from 'node:test'
import { bucketOf } from '../../src/digest/row-hash.js'
import { BadRequestError, UnknownFeedError } from '../../src/errors.js'
import type { WriteOp } from '../../src/protocol/types.js'
import { FILE_AT } from '../../src/store/sqlite/indexer.js'
import { SCHEMA_VERSION } from '../../src/store/sqlite/schema.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { listOf, oracle } from '../helpers/digest-oracle.js'
import { propertyParameters } from '../helpers/property.js'
import { tmpDb } from '../helpers/tmp.js'

/** Upserts of k0 … k{n-1}, then some of them rewritten and some deleted (tombstones). */
async function fill(store: SqliteSourceStore, feed: string, n: number): Promise<void> {
  await store.ensureFeed(feed)
  const ops: WriteOp[] = []
  for (let i = 0; i < n; i++) ops.push({ op: 'upsert', key: `k${i}`, data: { i, name: `name ${i}` } })
  await store.write(feed, ops)
  const more: WriteOp[] = []
  for (let i = 0; i < n; i += 7) more.push({ op: 'upsert', key: `k${i}`, data: { i, again: true } })
  for (let i = 3; i < n; i += 11) more.push({ op: 'delete', key: `k${i}` })
  await store.write(feed, more)
}

describe('SqliteSourceStore.bucketEntries', () => {
  it('lists the buckets asked for, tombstones included, in key order, with count and sum, as the log says', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    try {
      await fill(store, 'customers', 3000)
      const expected = await oracle(store, 'customers')
      // Not maintained: the call folds the log in first.
      assert.equal((await store.getFeed('customers')).digestSeq, 0)
      const asked = [...[...expected.lists.keys()].slice(0, 200), 65535, 0, 1234]
      const unique = [...new Set(asked)]
      const got = await store.bucketEntries('customers', unique)
      assert.equal(got.seq, expected.head)
      assert.equal(got.minSeq, 1)
      assert.deepEqual(got.lists, unique.map((b) => listOf(expected, b)))
      const tombstones = got.lists.flatMap((l) => l.entries.filter((e) => e.hash === null))
      assert.ok(tombstones.length > 0, 'some of the asked buckets hold tombstones')
    } finally {
      await store.close()
    }
  })

  it('refuses more than 256 buckets, a bucket out of range and an unknown feed', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    try {
      await store.ensureFeed('f')
      await assert.rejects(store.bucketEntries('f', Array.from({ length: 257 }, (_, i) => i)), BadRequestError)
      await assert.rejects(store.bucketEntries('f', [65536]), BadRequestError)
      await assert.rejects(store.bucketEntries('f', [1.5]), BadRequestError)
      await assert.rejects(store.bucketEntries('nope', [1]), UnknownFeedError)
      assert.deepEqual(await store.bucketEntries('f', [7]), { seq: 0, minSeq: 1, lists: [{ bucket: 7, count: 0, sum: 0n, entries: [] }] })
    } finally {
      await store.close()
    }
  })
})

describe('SqliteSourceStore: new keys filed in the bucket index in bulk', () => {
  const unfiled = (path: string): number => {
    const raw = new Database(path, { readonly: true })
    try {
      return raw.prepare('SELECT count(DISTINCT key) FROM tidemark_unfiled').pluck().get() as number
    } finally {
      raw.close()
    }
  }

  it('files nothing while folding a few keys, everything once the log is quiet, a bulk at FILE_AT', async () => {
    const path = tmpDb()
    const store = SqliteSourceStore.open(path)
    try {
      await fill(store, 'f', 3000)
      assert.equal((await store.maintain()).digested > 0, true)
      assert.equal(unfiled(path), 3000, 'folded keys wait to be filed')
      await store.maintain() // nothing left to fold: the quiet log files them
      assert.equal(unfiled(path), 0)
      const raw = new Database(path, { readonly: true })
      const listed = raw.prepare('SELECT key, bucket FROM tidemark_state_buckets ORDER BY key').all() as Array<{ key: string; bucket: number }>
      const keys = raw.prepare('SELECT key FROM tidemark_state ORDER BY key').pluck().all() as string[]
      raw.close()
      assert.deepEqual(listed.map((r) => r.key), keys, 'every state row, tombstones too, is in its bucket list once')
      for (const r of listed) assert.equal(r.bucket, bucketOf(r.key))
      // A busy log still files once FILE_AT keys wait (the fold and the filing in one maintain()).
      const ops: WriteOp[] = []
      for (let i = 0; i < FILE_AT; i++) ops.push({ op: 'upsert', key: `n${i}`, data: i })
      await store.write('f', ops)
      await store.maintain()
      assert.equal(unfiled(path), 0)
      // Updates of filed keys leave their entry alone.
      await store.write('f', [{ op: 'upsert', key: 'n1', data: 'again' }, { op: 'delete', key: 'n2' }])
      await store.maintain()
      assert.equal(unfiled(path), 0)
      const expected = await oracle(store, 'f')
      const buckets = [...new Set([bucketOf('n1'), bucketOf('n2'), bucketOf('k0')])]
      assert.deepEqual((await store.bucketEntries('f', buckets)).lists, buckets.map((b) => listOf(expected, b)))
    } finally {
      await store.close()
    }
  })

  it('a tombstone that retention drops leaves its bucket list too, filed or not', async () => {
    const path = tmpDb()
    const store = SqliteSourceStore.open(path)
    try {
      await store.ensureFeed('f', { retention: { changes: 10 } })
      const ops: WriteOp[] = []
      for (let i = 0; i < 500; i++) ops.push({ op: 'upsert', key: `k${i}`, data: i })
      await store.write('f', ops)
      await store.maintain()
      await store.maintain() // filed
      // Deleted: some filed keys, and keys written and deleted before any filing.
      await store.write('f', [...Array.from({ length: 50 }, (_, i) => ({ op: 'delete' as const, key: `k${i}` }))])
      await store.write('f', [{ op: 'upsert', key: 'brief', data: 1 }])
      await store.write('f', [{ op: 'delete', key: 'brief' }])
      for (let i = 0; i < 20; i++) await store.write('f', [{ op: 'upsert', key: 'k499', data: i }]) // moves the head on
      await store.maintain()
      const raw = new Database(path, { readonly: true })
      const listed = raw.prepare('SELECT key FROM tidemark_state_buckets ORDER BY key').pluck().all() as string[]
      const keys = raw.prepare('SELECT key FROM tidemark_state ORDER BY key').pluck().all() as string[]
      const queued = raw.prepare('SELECT count(*) FROM tidemark_unfiled').pluck().get() as number
      raw.close()
      assert.equal(keys.length, 450, 'the tombstones went')
      assert.ok(!keys.includes('brief'))
      assert.deepEqual(listed, keys)
      assert.equal(queued, 0)
    } finally {
      await store.close()
    }
  })

  it('a read-only store lists unfiled keys in their buckets, in key order, writing nothing', async () => {
    const path = tmpDb()
    const store = SqliteSourceStore.open(path)
    try {
      await fill(store, 'f', 3000)
      await store.maintain()
      assert.equal(unfiled(path), 3000)
      const expected = await oracle(store, 'f')
      const reader = SqliteSourceStore.open(path, { readonly: true })
      try {
        const buckets = [...expected.lists.keys()].slice(0, 256)
        assert.deepEqual((await reader.bucketEntries('f', buckets)).lists, buckets.map((b) => listOf(expected, b)))
      } finally {
        await reader.close()
      }
      assert.equal(unfiled(path), 3000, 'the read-only look filed nothing')
      // A writable reader files them first, and answers the same.
      const buckets = [...expected.lists.keys()].slice(0, 256)
      assert.deepEqual((await store.bucketEntries('f', buckets)).lists, buckets.map((b) => listOf(expected, b)))
      assert.equal(unfiled(path), 0)
    } finally {
      await store.close()
    }
  })
})

describe('SqliteSourceStore.bucketEntries, property', () => {
  it('equals the log\'s own account after any writes, read between any of them', async () => {
    const op = fc.oneof(
      fc.record({ op: fc.constant('upsert' as const), key: fc.integer({ min: 0, max: 40 }).map((i) => `k${i}`), data: fc.jsonValue() }),
      fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 40 }).map((i) => `k${i}`) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 6 }), async (batches) => {
        const path = tmpDb()
        const store = SqliteSourceStore.open(path)
        try {
          await store.ensureFeed('f')
          for (const ops of batches) {
            await store.write('f', ops as WriteOp[])
            const expected = await oracle(store, 'f')
            const buckets = [...new Set(Array.from({ length: 41 }, (_, i) => bucketOf(`k${i}`)))].slice(0, 256)
            const got = await store.bucketEntries('f', buckets)
            assert.equal(got.seq, expected.head)
            assert.deepEqual(got.lists, buckets.map((b) => listOf(expected, b)))
          }
        } finally {
          await store.close()
        }
      }),
      propertyParameters(15),
    )
  })
})

describe('SQLite source schema 2 → 4', () => {
  it('backfills every state row\'s bucket into the bucket lists when an existing file is opened, and keeps them up to date', async () => {
    const path = tmpDb()
    let store = SqliteSourceStore.open(path)
    await fill(store, 'a', 12_000)
    await fill(store, 'b', 500)
    await store.maintain()
    await store.close()

    // The file as schema 2 left it: no bucket column, no bucket lists.
    const raw = new Database(path)
    raw.exec('DROP TABLE tidemark_state_buckets; DROP TABLE tidemark_unfiled; ALTER TABLE tidemark_state DROP COLUMN bucket')
    raw.prepare(`UPDATE tidemark_meta SET value = '2' WHERE name = 'schema'`).run()
    raw.close()

    store = SqliteSourceStore.open(path)
    try {
      const check = new Database(path, { readonly: true })
      try {
        assert.equal(check.prepare(`SELECT value FROM tidemark_meta WHERE name = 'schema'`).pluck().get(), String(SCHEMA_VERSION))
        assert.equal(SCHEMA_VERSION, 5)
        // Upgrade 3 computed every bucket; upgrade 4 moved them into the bucket lists' own table.
        const rows = check.prepare('SELECT key, bucket FROM tidemark_state_buckets').all() as Array<{ key: string; bucket: number }>
        assert.equal(rows.length, 12_500)
        for (const r of rows) assert.equal(r.bucket, bucketOf(r.key), `bucket of ${r.key}`)
        assert.equal(check.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'tidemark_state_bucket'`).pluck().get(), 0)
      } finally {
        check.close()
      }
      await store.write('a', [{ op: 'upsert', key: 'new-key', data: 1 }, { op: 'delete', key: 'k1' }])
      const expected = await oracle(store, 'a')
      const buckets = [bucketOf('new-key'), bucketOf('k1'), bucketOf('k2')]
      const got = await store.bucketEntries('a', [...new Set(buckets)])
      assert.deepEqual(got.lists, [...new Set(buckets)].map((b) => listOf(expected, b)))
    } finally {
      await store.close()
    }
  })
})
