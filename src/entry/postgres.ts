/** `tidemark/postgres`: the PostgreSQL stores (loads `pg`). */
export * from './common.js'
export { PostgresSource, PostgresFeedWriter } from '../store/postgres/postgres-source.js'
export { PostgresSourceStore } from '../store/postgres/postgres-source-store.js'
export type { PostgresSourceStoreOptions } from '../store/postgres/postgres-source-store.js'
export { PostgresReplicaStore } from '../store/postgres/postgres-replica-store.js'
export type { PostgresReplicaStoreOptions } from '../store/postgres/postgres-replica-store.js'
export type { PgQueryable } from '../store/postgres/connection.js'
