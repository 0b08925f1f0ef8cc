/**
 * A writer in another process, for the long-poll benchmark: argv = database path, feed. On each
 * IPC message `{ key, data }` it commits one change through the library API and answers
 * `{ seq, committedAt }`, the commit's end on the monotonic clock every process shares.
 */
import Database from 'better-sqlite3'
import type { Json } from '../../src/protocol/types.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { nowMs } from '../harness.js'
import { ownerPragmas } from './customers.js'

const [path, feedName] = process.argv.slice(2) as [string, string]
const db = new Database(path)
ownerPragmas(db)
const source = new SqliteSource(db)
const feed = source.feed(feedName)

process.on('message', (message: { key: string; data: Json }) => {
  const seq = feed.put(message.key, message.data)
  const committedAt = nowMs()
  process.send?.({ seq, committedAt })
})
process.on('disconnect', () => {
  source.close()
  db.close()
})
process.send?.({ ready: true })
