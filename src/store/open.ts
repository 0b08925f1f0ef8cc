import { BadRequestError } from '../errors.js'
import type { ScratchReplicaStore } from './replica-store.js'
import { openSqliteScratch } from './sqlite/scratch-replica-store.js'
import { SqliteSourceStore } from './sqlite/sqlite-source-store.js'
import type { Logger, SourceStore } from './store.js'

export interface OpenStoreOptions {
  logger?: Logger
  /** Create a SQLite file that does not exist yet (default false: a typo should not make an empty store). */
  create?: boolean
}

/**
 * Opens a source store by location: a `postgres://` URL (a later backend) or a SQLite file path.
 * The one place that maps a location onto a backend.
 */
export async function openSourceStore(location: string, options: OpenStoreOptions = {}): Promise<SourceStore> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    throw new BadRequestError('the PostgreSQL store is not in this version of tidemark yet: use a SQLite file')
  }
  return SqliteSourceStore.open(location, {
    create: options.create ?? false,
    ...(options.logger ? { logger: options.logger } : {}),
  })
}

/**
 * A scratch replica store in a new file under `dir` (SQLite: embedded, no server to reach), for
 * work that needs a replica's merge but not a replica, such as building an export at one position.
 */
export function openScratchReplicaStore(dir: string, logger?: Logger): ScratchReplicaStore {
  return openSqliteScratch(dir, logger)
}
