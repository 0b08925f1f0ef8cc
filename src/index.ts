/**
 * tidemark's public entry: everything a library user may import, and nothing else. Each part is
 * also its own entry (package.json `exports`), so that a user loads only what it uses: an owner on
 * SQLite imports `tidemark/sqlite` and loads neither fastify nor pg.
 */
export * from './entry/sqlite.js'
export * from './entry/postgres.js'
export * from './entry/server.js'
export * from './entry/replica.js'
export * from './entry/brokers.js'
export * from './entry/export.js'
