import { BadRequestError } from '../errors.js'
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
