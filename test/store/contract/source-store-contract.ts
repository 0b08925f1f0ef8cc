import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addHash, bucketOf, rowHash } from '../../../src/digest/row-hash.js'
import type { Change } from '../../../src/protocol/types.js'
import type { SourceStore } from '../../../src/store/store.js'

/**
 * The SourceStore contract: one suite, run against every backend (test/store/*-source-store*.test.ts),
 * like kysely's dialect tests. A backend gives a fresh store and a way to write the owner's tables
 * with plain SQL, as any other client of its database would.
 */
export interface SourceHarness {
  store: SourceStore
  /** Runs `statements` (`;`-separated) in one transaction of another client of the database. */
  sql(statements: string): Promise<void>
  /** The names of the triggers on `table` (tidemark's capture or any other). */
  triggers(table: string): Promise<string[]>
  /** Rows in tidemark's own tables (feeds, queue, log, state, digest), all feeds together. */
  tidemarkRows(): Promise<number>
  close(): Promise<void>
}

export interface SourceBackend {
  name: string
  open(): Promise<SourceHarness>
  /**
   * Whether captured changes keep their writer's transaction boundaries (PostgreSQL: yes; SQLite's
   * triggers cannot tell where a transaction ends, so each captured change is its own).
   */
  capturedTransactions: boolean
}

export async function collect(it: AsyncIterable<Change[]>): Promise<Change[]> {
  const out: Change[] = []
  for await (const batch of it) out.push(...batch)
  return out
}

export function sourceStoreContract(backend: SourceBackend): void {
  describe(`SourceStore contract (${backend.name})`, () => {
    const withStore = async (fn: (h: SourceHarness) => Promise<void>): Promise<void> => {
      const h = await backend.open()
      try {
        await fn(h)
      } finally {
        await h.close()
      }
    }

    it('writes transactions with gap-free seqs and tx boundaries; maintain folds them into state and digest', () =>
      withStore(async ({ store }) => {
        await store.ensureFeed('customers')
        assert.deepEqual(await store.write('customers', [{ op: 'upsert', key: '1', data: { id: 1, name: 'Ada' } }, { op: 'upsert', key: '2', data: { id: 2, name: 'Bob' } }]), [1, 2])
        assert.deepEqual(await store.write('customers', [{ op: 'upsert', key: '3', data: { id: 3, name: 'Cy' } }]), [3])
        assert.deepEqual(await store.write('customers', [{ op: 'delete', key: '1' }]), [4])
        assert.deepEqual(await store.write('customers', []), [])
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
        assert.equal((await store.getFeed('customers')).head, 4)
        await store.maintain()
        const after = await store.getFeed('customers')
        assert.equal(after.keys, 2)
        assert.equal(after.digestSeq, 4)
        const snap = await store.snapshot('customers', null, 10)
        assert.deepEqual(snap.rows.map((r) => [r.key, r.seq]), [['2', 2], ['3', 3]])
        assert.equal(snap.done, true)
        assert.equal(snap.head, 4)
        const { rows } = await store.rows('customers', ['1', '2', 'nope'])
        assert.deepEqual(rows.map((r) => [r.key, r.seq, r.deleted ?? false]), [['1', 4, true], ['2', 2, false]])
        assert.deepEqual((await store.listFeeds()).map((f) => f.name), ['customers'])
      }))

    it('keeps the data text exactly as written and sorts keys by UTF-8 bytes', () =>
      withStore(async ({ store }) => {
        await store.ensureFeed('f')
        const keys = ['b', 'a', 'é', '\u{1F600}', '\uFFFD', 'A', 'a b']
        await store.write('f', keys.map((key, i) => ({ op: 'upsert' as const, key, data: { s: `x\u00e9\u2028"${i}`, n: 1.5, nested: [null, true] } })))
        const changes = await collect(store.changes('f', 0))
        assert.equal((changes[0] as unknown as { dataText: string }).dataText, JSON.stringify({ s: 'x\u00e9\u2028"0', n: 1.5, nested: [null, true] }))
        const snap = await store.snapshot('f', null, 100)
        assert.deepEqual(snap.rows.map((r) => r.key), ['A', 'a', 'a b', 'b', 'é', '\uFFFD', '\u{1F600}'])
        const page = await store.snapshot('f', 'a b', 2)
        assert.deepEqual(page.rows.map((r) => r.key), ['b', 'é'])
        assert.equal(page.done, false)
        assert.equal(page.last, 'é')
      }))

    it('captures a tracked table, including writes from another client', () =>
      withStore(async ({ store, sql }) => {
        await sql(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, "odd ""col""" TEXT); INSERT INTO customers VALUES (1,'a','x'),(2,'b',NULL)`)
        const info = await store.track({ table: 'customers', keyColumn: 'id' })
        assert.equal(info.head, 2)
        assert.deepEqual(info.tracked, { table: 'customers', keyColumn: 'id', columns: ['id', 'name', 'odd "col"'], active: true })
        await sql(`UPDATE customers SET name='bb' WHERE id=2`)
        await sql(`DELETE FROM customers WHERE id=1`)
        await sql(`UPDATE customers SET id=5 WHERE id=2`)
        const changes = await collect(store.changes('customers', 0))
        assert.deepEqual(
          changes.map((c) => [c.seq, c.key, c.op]),
          [[1, '1', 'upsert'], [2, '2', 'upsert'], [3, '2', 'upsert'], [4, '1', 'delete'], [5, '2', 'delete'], [6, '5', 'upsert']],
        )
        assert.deepEqual(changes.slice(0, 4).map((c) => c.tx), [2, 2, 3, 4])
        assert.deepEqual(changes.slice(4).map((c) => c.tx), backend.capturedTransactions ? [6, 6] : [5, 6])
        assert.deepEqual(changes[5]?.data, { id: 5, name: 'bb', 'odd "col"': null })
        await assert.rejects(store.write('customers', [{ op: 'upsert', key: '9', data: 1 }]), /captured from table/)
        await assert.rejects(store.track({ table: 'nope', keyColumn: 'id' }), { code: 'bad-request' })
        await assert.rejects(store.track({ table: 'customers', keyColumn: 'nope', feed: 'other' }), { code: 'bad-request' })
      }))

    it('refuses a key that is not a primary key or unique NOT NULL columns, installing nothing; a composite key is a JSON array', () =>
      withStore(async ({ store, sql, triggers, tidemarkRows }) => {
        // pgbench_history: no primary key, the named column repeats.
        await sql(`CREATE TABLE history (aid INTEGER NOT NULL, delta INTEGER); INSERT INTO history VALUES (1, 5), (1, 6), (2, 7)`)
        const before = await tidemarkRows()
        await assert.rejects(store.track({ table: 'history', keyColumn: 'aid' }), {
          code: 'bad-request',
          message: /column "aid" of table "history" is not its primary key or unique: rows sharing a value would be merged into one key; give it a primary key/,
        })
        assert.deepEqual(await triggers('history'), [])
        assert.equal(await tidemarkRows(), before)
        await sql(`INSERT INTO history VALUES (2, 8)`)
        assert.deepEqual((await store.listFeeds()).map((f) => f.name), [])
        assert.equal(await tidemarkRows(), before)

        await sql(`CREATE TABLE u (id INTEGER UNIQUE, email TEXT NOT NULL UNIQUE, a INTEGER NOT NULL, b TEXT NOT NULL, c TEXT, UNIQUE (a, b));
                   INSERT INTO u VALUES (1, 'x@y', 1, 'p', NULL), (2, 'z@y', 1, 'q', NULL)`)
        await assert.rejects(store.track({ table: 'u', keyColumn: 'id' }), {
          code: 'bad-request',
          message: /column "id" of table "u" has nullable column "id": a key must be NOT NULL; key it by "email" or "a,b"/,
        })
        await assert.rejects(store.track({ table: 'u', keyColumn: 'a' }), /column "a" of table "u" is not its primary key or unique/)
        await assert.rejects(store.track({ table: 'u', keyColumn: 'a,c' }), /columns "a,c" of table "u" are not its primary key or unique/)
        await assert.rejects(store.track({ table: 'u', keyColumn: 'email,c' }), /has nullable column "c"/)
        await assert.rejects(store.track({ table: 'u', keyColumn: 'a,nope' }), /table "u" has no column "nope"/)
        await assert.rejects(store.track({ table: 'u', keyColumn: 'a,a' }), /names a column twice/)
        assert.deepEqual(await triggers('u'), [])
        assert.equal(await tidemarkRows(), before)

        // A superset of a unique set is unique too; the order named is the key's order.
        const info = await store.track({ table: 'u', keyColumn: 'b,a' })
        assert.equal(info.head, 2)
        assert.equal(info.tracked?.keyColumn, 'b,a')
        assert.notDeepEqual(await triggers('u'), [])
        await sql(`UPDATE u SET b = 'r' WHERE a = 1 AND b = 'q'; UPDATE u SET c = 'k' WHERE b = 'p'`)
        const changes = await collect(store.changes('u', 0))
        assert.deepEqual(
          changes.map((c) => [c.key, c.op]),
          [['["p",1]', 'upsert'], ['["q",1]', 'upsert'], ['["q",1]', 'delete'], ['["r",1]', 'upsert'], ['["p",1]', 'upsert']],
        )
        assert.deepEqual(changes[4]?.data, { id: 1, email: 'x@y', a: 1, b: 'p', c: 'k' })
        // The email column alone keys it too (another feed of the same table).
        assert.equal((await store.track({ table: 'u', keyColumn: 'email', feed: 'by-email' })).head, 2)
      }))

    it('untrack then track again resynchronises the feed with the table', () =>
      withStore(async ({ store, sql }) => {
        await sql(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1,'a'),(2,'b')`)
        await store.track({ table: 't', keyColumn: 'id' })
        await store.untrack('t')
        assert.equal((await store.getFeed('t')).tracked?.active, false)
        await assert.rejects(store.untrack('t'), /does not capture/)
        await sql(`DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (3,'c')`)
        assert.equal((await store.getFeed('t')).head, 2)
        await store.track({ table: 't', keyColumn: 'id' })
        const changes = await collect(store.changes('t', 2))
        assert.deepEqual(changes.map((c) => [c.key, c.op, c.tx]), [['1', 'delete', 5], ['2', 'upsert', 5], ['3', 'upsert', 5]])
        const snap = await store.snapshot('t', null, 10)
        assert.deepEqual(snap.rows.map((r) => r.key), ['2', '3'])
        await store.ensureFeed('t', { retention: { changes: 100 } })
        assert.equal((await store.getFeed('t')).retention.changes, 100)
      }))

    it('never splits a transaction: a limit ends at a boundary, and a transaction longer than a page keeps its tx', () =>
      withStore(async ({ store }) => {
        await store.ensureFeed('f')
        await store.write('f', Array.from({ length: 2500 }, (_, i) => ({ op: 'upsert' as const, key: `k${i}`, data: i })))
        await store.write('f', [{ op: 'upsert', key: 'x', data: 1 }, { op: 'delete', key: 'k1' }])
        const first = await collect(store.changes('f', 0, { limit: 10 }))
        assert.equal(first.length, 2500)
        assert.ok(first.every((c) => c.tx === 2500))
        assert.deepEqual(first.slice(0, 3).map((c) => c.key), ['k0', 'k1', 'k2'])
        const rest = await collect(store.changes('f', 2500, { limit: 1 }))
        assert.deepEqual(rest.map((c) => [c.seq, c.tx]), [[2501, 2502], [2502, 2502]])
      }))

    it('applies retention by count, never beyond the digest, and reports log-truncated', () =>
      withStore(async ({ store }) => {
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
        const snap = await store.snapshot('f', null, 100)
        assert.deepEqual(snap.rows.map((r) => r.key), ['k1', 'k2', 'k3'])
      }))

    it('keeps a digest equal to one recomputed from the state', () =>
      withStore(async ({ store }) => {
        await store.ensureFeed('f')
        for (let t = 0; t < 30; t++) {
          await store.write('f', Array.from({ length: 1 + (t % 4) }, (_, i) => (((t + i) % 5 === 0)
            ? { op: 'delete' as const, key: `k${(t * 7 + i) % 23}` }
            : { op: 'upsert' as const, key: `k${(t * 7 + i) % 23}`, data: { t, i } })))
          if (t % 9 === 0) await store.maintain()
        }
        const snap = await store.snapshot('f', null, 1000)
        const fresh = new Map<number, { count: number; sum: bigint }>()
        for (const r of snap.rows) {
          const b = bucketOf(r.key)
          const cur = fresh.get(b) ?? { count: 0, sum: 0n }
          fresh.set(b, { count: cur.count + 1, sum: addHash(cur.sum, rowHash(r.key, r.seq, JSON.stringify(r.data))) })
        }
        const { seq, leaves } = await store.digestLeaves('f')
        assert.equal(seq, (await store.getFeed('f')).head)
        assert.deepEqual(new Map(leaves.map((l) => [l.bucket, { count: l.count, sum: l.sum }])), fresh)
        assert.equal((await store.getFeed('f')).keys, snap.rows.length)
      }))

    it('wakes a long-poll on a commit, and times out with the head otherwise', () =>
      withStore(async ({ store }) => {
        await store.ensureFeed('f')
        const started = Date.now()
        assert.equal(await store.waitForChanges('f', 0, { timeoutMs: 100 }), 0)
        assert.ok(Date.now() - started >= 90)
        const waiting = store.waitForChanges('f', 0, { timeoutMs: 10_000 })
        await new Promise((resolve) => setTimeout(resolve, 30))
        await store.write('f', [{ op: 'upsert', key: 'a', data: 1 }])
        assert.equal(await waiting, 1)
        const aborted = new AbortController()
        const held = store.waitForChanges('f', 1, { timeoutMs: 10_000, signal: aborted.signal })
        aborted.abort(new Error('stop'))
        await assert.rejects(held, /stop/)
        await assert.rejects(store.waitForChanges('nope', 0, { timeoutMs: 10 }), { code: 'unknown-feed' })
      }))

    it('refuses bad keys, data and feed names with clear errors, leaving nothing behind', () =>
      withStore(async ({ store }) => {
        await assert.rejects(store.ensureFeed('../etc'), { code: 'bad-request' })
        await assert.rejects(store.getFeed('nope'), { code: 'unknown-feed' })
        await assert.rejects(store.write('nope', [{ op: 'upsert', key: 'k', data: 1 }]), { code: 'unknown-feed' })
        await store.ensureFeed('f')
        await assert.rejects(store.write('f', [{ op: 'upsert', key: '', data: 1 }]), { code: 'bad-request' })
        await assert.rejects(store.write('f', [{ op: 'upsert', key: 'x'.repeat(600), data: 1 }]), { code: 'too-large' })
        await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: { n: 1n } as never }]), /not JSON-able/)
        await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: { d: new Date() } as never }]), /not JSON-able: Date/)
        await assert.rejects(store.write('f', [{ op: 'upsert', key: 'k', data: 'x'.repeat(1024 * 1024 + 1) }]), { code: 'too-large' })
        assert.equal((await store.getFeed('f')).head, 0)
        const { epoch } = await store.getFeed('f')
        assert.notEqual((await store.resetEpoch('f')).epoch, epoch)
      }))
  })
}
