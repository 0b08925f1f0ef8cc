/**
 * Figure 1b of the source suite: how fast the indexer folds the log into the digest
 * (`store.maintain()`), which runs beside the owner's writes rather than inside them. The
 * baseline is the rate at which one owner writes those changes through the API in 100-row
 * transactions: an indexer at least as fast keeps up with a writer at full speed.
 */
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { gc, median, timeMs, timeSyncMs } from '../harness.js'
import { ownerPragmas, OwnerWorkload, type OwnerOp } from './customers.js'

export interface IndexerRate {
  /** Changes written and digested per round. */
  changes: number
  /** Changes per second written through the API (100-row transactions). */
  writeRate: number
  /** Changes per second folded into the digest by `maintain()`. */
  digestRate: number
}

export async function measureIndexer(dir: string, changes: number, rounds: number): Promise<IndexerRate> {
  const path = join(dir, 'indexer.db')
  const db = new Database(path)
  ownerPragmas(db)
  const source = new SqliteSource(db)
  const feed = source.feed('customers')
  const workload = new OwnerWorkload(42)
  // A store already holding some keys, so that updates replace digested hashes.
  const initial = workload.initial(Math.round(changes / 4))
  db.transaction(() => {
    for (const row of initial) feed.put(String(row.id), row)
  })()
  const write = db.transaction((ops: OwnerOp[]) => {
    for (const op of ops) feed.put(String(op.row.id), op.row)
  })
  const store = SqliteSourceStore.open(path)
  const writeRates: number[] = []
  const digestRates: number[] = []
  const txCount = Math.max(1, Math.round(changes / 100))
  try {
    // The initial rows are digested first, untimed.
    await store.maintain()
    for (let round = 0; round < rounds; round++) {
      const txs = workload.transactions(txCount, 100)
      gc()
      const writeMs = timeSyncMs(() => {
        for (const ops of txs) write(ops)
      })
      gc()
      let digested = 0
      const digestMs = await timeMs(async () => {
        digested = (await store.maintain()).digested
      })
      const written = txCount * 100
      if (digested !== written) throw new Error(`maintain() digested ${digested} changes, expected ${written}`)
      writeRates.push(written / (writeMs / 1000))
      digestRates.push(digested / (digestMs / 1000))
    }
    return { changes: txCount * 100, writeRate: median(writeRates), digestRate: median(digestRates) }
  } finally {
    await store.close()
    source.close()
    db.close()
  }
}
