import pg from 'pg'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { pgDatabase } from '../helpers/pg.js'
import { sourceStoreContract } from './contract/source-store-contract.js'

sourceStoreContract({
  name: 'postgres',
  capturedTransactions: true,
  async open() {
    const url = await pgDatabase()
    const store = await PostgresSourceStore.open(url)
    const owner = new pg.Client({ connectionString: url })
    await owner.connect()
    return {
      store,
      async sql(statements: string) {
        await owner.query(`BEGIN; ${statements}; COMMIT`)
      },
      async triggers(table: string) {
        const { rows } = await owner.query<{ tgname: string }>('SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1', [table])
        return rows.map((r) => r.tgname)
      },
      async tidemarkRows() {
        const { rows } = await owner.query<{ n: string }>(
          `SELECT (SELECT count(*) FROM tidemark.feeds) + (SELECT count(*) FROM tidemark.pending) + (SELECT count(*) FROM tidemark.changes)
                + (SELECT count(*) FROM tidemark.state) + (SELECT count(*) FROM tidemark.digest) AS n`,
        )
        return Number(rows[0]?.n)
      },
      async close() {
        await store.close()
        await owner.end()
      },
    }
  },
})
