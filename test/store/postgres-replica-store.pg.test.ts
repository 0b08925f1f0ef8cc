import pg from 'pg'
import type { Change } from '../../src/protocol/types.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { pgDatabase } from '../helpers/pg.js'
import { replicaStoreContract } from './contract/replica-store-contract.js'

replicaStoreContract<pg.ClientBase>({
  name: 'postgres',
  async open() {
    const url = await pgDatabase()
    const pool = new pg.Pool({ connectionString: url })
    await pool.query('CREATE TABLE projection (key text PRIMARY KEY, value text NOT NULL)')
    // The projection hook is async on PostgreSQL: it writes on the apply transaction's client.
    const hook = async (c: Change, tx: pg.ClientBase): Promise<void> => {
      if (c.op === 'upsert') {
        await tx.query('INSERT INTO projection (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [c.key, JSON.stringify(c.data)])
      } else await tx.query('DELETE FROM projection WHERE key = $1', [c.key])
    }
    return {
      store: () => PostgresReplicaStore.open(url),
      hook,
      failingHook: (key: string) => async (c: Change, tx: pg.ClientBase) => {
        await hook(c, tx)
        if (c.key === key) throw new Error(`no ${key}`)
      },
      async projection() {
        const { rows } = await pool.query<{ key: string; value: string }>('SELECT key, value FROM projection')
        return new Map(rows.map((r) => [r.key, r.value]))
      },
      async close() {
        await pool.end()
      },
    }
  },
})
