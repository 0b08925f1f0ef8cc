import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { PostgresSource } from '../../src/store/postgres/postgres-source.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { PENDING_SLOT_SQL, PENDING_SLOTS } from '../../src/store/postgres/schema.js'
import { pgDatabase } from '../helpers/pg.js'
import { collect } from './contract/source-store-contract.js'

/** The capture queue without vacuum: partitions emptied by TRUNCATE once moved (sequencer.ts, rotate). */
describe('PostgreSQL source: the capture queue', () => {
  it('empties an old partition by TRUNCATE only once every writer in it has ended, losing nothing', async () => {
    const url = await pgDatabase()
    const store = await PostgresSourceStore.open(url)
    const pool = new pg.Pool({ connectionString: url })
    try {
      await (await PostgresSource.attach(pool)).feed('f')
      const size = async (slot: number): Promise<number> =>
        Number((await pool.query<{ n: string }>(`SELECT pg_relation_size('tidemark.pending_${slot}') AS n`)).rows[0]?.n)
      // A partition the writers have left: two periods ahead of the current one is two or more behind it
      // (a candidate for two whole periods, so this test may cross one boundary).
      const current = Number((await pool.query<{ s: number }>(`SELECT ${PENDING_SLOT_SQL} AS s`)).rows[0]?.s)
      const old = (current + 2) % PENDING_SLOTS
      await pool.query(
        `INSERT INTO tidemark.pending (feed, key, op, data, slot) SELECT 'f', 'k' || lpad(g::text, 5, '0'), 1, '{"n":' || g || '}', $1 FROM generate_series(1, 3000) g`,
        [old],
      )
      // A writer still in that partition: the rotation must not take it (it would wait, or lose its row).
      const late = await pool.connect()
      await late.query('BEGIN')
      await late.query(`INSERT INTO tidemark.pending (feed, key, op, data, slot) VALUES ('f', 'late', 1, '1', $1)`, [old])
      await store.maintain()
      assert.equal((await store.getFeed('f')).head, 3000)
      assert.ok((await size(old)) > 0, 'the partition a writer is still in was left alone')
      await late.query('COMMIT')
      late.release()
      // Committed but not sequenced yet: the rotation's own pass moves it before truncating.
      await store.maintain()
      assert.equal(await size(old), 0, 'emptied by TRUNCATE')
      assert.equal(Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM tidemark.pending')).rows[0]?.n), 0)
      const changes = await collect(store.changes('f', 0))
      assert.deepEqual(changes.map((c) => c.seq), Array.from({ length: 3001 }, (_, i) => i + 1))
      assert.equal(changes[3000]?.key, 'late')
      // The owner's writes keep going in the current partition meanwhile.
      await (await PostgresSource.attach(pool)).feed('f').then((f) => f.put(pool, 'after', { n: 1 }))
      assert.equal((await store.getFeed('f')).head, 3002)
    } finally {
      await store.close()
      await pool.end()
    }
  })

  it('analyses what it bulk-loads: the log after a large pass, the state and digest after a large fold', async () => {
    const url = await pgDatabase()
    const store = await PostgresSourceStore.open(url)
    const pool = new pg.Pool({ connectionString: url })
    try {
      await pool.query(`CREATE TABLE big (id integer PRIMARY KEY, v text); INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 60000) g`)
      const analysed = async (): Promise<string[]> =>
        (
          await pool.query<{ relname: string }>(
            `SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'tidemark' AND last_analyze IS NOT NULL ORDER BY relname`,
          )
        ).rows.map((r) => r.relname)
      assert.deepEqual(await analysed(), [])
      await store.track({ table: 'big', keyColumn: 'id' })
      assert.deepEqual(await analysed(), ['changes'])
      await store.maintain()
      assert.deepEqual(await analysed(), ['changes', 'digest', 'state'])
      const state = await pool.query<{ n: number }>(`SELECT reltuples AS n FROM pg_class WHERE oid = 'tidemark.state'::regclass`)
      assert.equal(state.rows[0]?.n, 60000)
    } finally {
      await store.close()
      await pool.end()
    }
  })

  it('migration 3 moves a queue left by an older tidemark into the partitioned one', async () => {
    const url = await pgDatabase()
    const pool = new pg.Pool({ connectionString: url })
    try {
      const first = await PostgresSourceStore.open(url)
      await first.ensureFeed('f')
      await pool.query('CREATE TABLE tt (id integer PRIMARY KEY)')
      await first.track({ table: 'tt', keyColumn: 'id' })
      await first.close()
      // The queue as schema version 2 had it, with changes an older tidemark's owners wrote.
      await pool.query(`
        DROP TABLE tidemark.pending;
        CREATE TABLE tidemark.pending (
          feed text COLLATE "C" NOT NULL, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
          ord bigint NOT NULL DEFAULT nextval('tidemark.pending_ord'), key text COLLATE "C" NOT NULL,
          op smallint NOT NULL, data text, ts bigint NOT NULL DEFAULT 0);
        INSERT INTO tidemark.pending (feed, key, op, data) VALUES ('f', 'a', 1, '1'), ('f', 'b', 1, '2');
        UPDATE tidemark.meta SET value = '2' WHERE name = 'schema'`)
      const store = await PostgresSourceStore.open(url)
      try {
        const { rows } = await pool.query<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = 'tidemark.pending'::regclass`)
        assert.equal(rows[0]?.kind, 'p')
        const changes = await collect(store.changes('f', 0))
        assert.deepEqual(changes.map((c) => [c.seq, c.key, c.tx]), [[1, 'a', 2], [2, 'b', 2]])
        // A table tracked before: its trigger writes into the new queue's current partition.
        await pool.query('INSERT INTO tt VALUES (7)')
        assert.deepEqual((await collect(store.changes('tt', 0))).map((c) => [c.key, c.op]), [['7', 'upsert']])
        const fn = await pool.query<{ src: string }>(`SELECT prosrc AS src FROM pg_proc WHERE proname LIKE 'capture_%'`)
        assert.match(fn.rows[0]?.src ?? '', /INSERT INTO tidemark\.pending_0 /)
      } finally {
        await store.close()
      }
    } finally {
      await pool.end()
    }
  })
})
