/** `tidemark/server`: the HTTP feed server (loads fastify). */
export * from './common.js'
export { createFeedServer } from '../server/feed-server.js'
export type { FeedServer, FeedServerOptions, AuthRequest } from '../server/feed-server.js'
export { PROTOCOL_HEADER, EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE } from '../server/http-protocol.js'
export type { ChangesEnd, SnapshotEnd, ErrorLine, RowsResponse } from '../server/http-protocol.js'
