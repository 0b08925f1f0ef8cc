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
      async close() {
        await store.close()
        await owner.end()
      },
    }
  },
})
