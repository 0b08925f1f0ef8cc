import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../store.js'
import type { ScratchReplicaStore } from '../replica-store.js'
import { SqliteReplicaStore } from './sqlite-replica-store.js'

/**
 * A replica store in a new SQLite file under `dir`, deleted (with its WAL) by `dispose()`. Nothing
 * in it outlives the process that uses it, so it skips fsync: a crash loses a scratch file anyway.
 */
export function openSqliteScratch(dir: string, logger?: Logger): ScratchReplicaStore {
  const path = join(dir, `.tidemark-scratch-${process.pid}-${randomBytes(6).toString('hex')}.db`)
  const store = SqliteReplicaStore.open(path, logger ? { logger } : {})
  store.db.pragma('synchronous = OFF')
  let disposed: Promise<void> | undefined
  return {
    store,
    location: path,
    dispose() {
      disposed ??= (async () => {
        try {
          await store.close()
        } finally {
          for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true })
        }
      })()
      return disposed
    },
  }
}
