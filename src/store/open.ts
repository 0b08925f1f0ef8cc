import { isPostgresUrl } from './postgres/url.js'
import { BadRequestError } from '../errors.js'
import type { ScratchReplicaStore } from './replica-store.js'
import { openSqliteScratch } from './sqlite/scratch-replica-store.js'
import { SqliteSourceStore } from './sqlite/sqlite-source-store.js'
import type { ReplicaStore } from './replica-store.js'
import type { ReplicaReport } from './sqlite/replica-report.js'
import type { Logger, SourceStore } from './store.js'

export interface OpenStoreOptions {
  logger?: Logger
  /** Create a SQLite file that does not exist yet (default false: a typo should not make an empty store). */
  create?: boolean
  /**
   * Only read (`tidemark feeds`, `dump`): an existing source, opened read-only where the backend
   * can; no schema created or upgraded, no retention. The other kind of store (a replica, or a
   * database without tidemark's tables) is refused with NotAStoreError and left as it was.
   */
  readonly?: boolean
}

/**
 * Opens a source store by location: a `postgres://` (or `postgresql://`) URL, or a SQLite file
 * path. The one place that maps a location onto a backend.
 */
export async function openSourceStore(location: string, options: OpenStoreOptions = {}): Promise<SourceStore> {
  if (isPostgresUrl(location)) {
    // Loaded only when asked for, so that SQLite-only users never load pg.
    if (options.readonly) await (await import('./postgres/store-kind.js')).checkPostgresSource(location)
    const { PostgresSourceStore } = await import('./postgres/postgres-source-store.js')
    return PostgresSourceStore.open(location, options.logger ? { logger: options.logger } : {})
  }
  return SqliteSourceStore.open(location, {
    create: options.create ?? false,
    readonly: options.readonly ?? false,
    ...(options.logger ? { logger: options.logger } : {}),
  })
}

/**
 * Opens a replica store by location: a `postgres://` URL (tidemark's replica tables in that
 * database) or a SQLite file path (created when missing unless `create: false`).
 */
export async function openReplicaStore(location: string, options: OpenStoreOptions = {}): Promise<ReplicaStore> {
  if (isPostgresUrl(location)) {
    const { PostgresReplicaStore } = await import('./postgres/postgres-replica-store.js')
    return PostgresReplicaStore.open(location, options.logger ? { logger: options.logger } : {})
  }
  const { SqliteReplicaStore } = await import('./sqlite/sqlite-replica-store.js')
  return SqliteReplicaStore.open(location, {
    create: options.create ?? true,
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

/** What `tidemark status` shows of the replicas at a location (a SQLite file or a postgres:// URL), read only. */
export async function readReplicaReports(location: string, options: { name?: string; now?: number } = {}): Promise<ReplicaReport[]> {
  if (isPostgresUrl(location)) return (await import('./postgres/replica-report.js')).readPostgresReplicas(location, options)
  return (await import('./sqlite/replica-report.js')).readReplicas(location, options)
}
