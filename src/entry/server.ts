/** `tidemark/server`: the HTTP feed server (loads fastify). */
export * from './common.js'
export { createFeedServer } from '../server/feed-server.js'
export type { FeedServer, FeedServerOptions, AuthRequest } from '../server/feed-server.js'
export { createToken, listTokens, revokeToken, rotateToken, tokenAuthorizer, SCOPES } from '../server/tokens.js'
export type { Scope, TokenInfo, NewToken, AuthorizerOptions } from '../server/tokens.js'
export type { TokenRow, TokenTable } from '../store/token-table.js'
export { PROTOCOL_HEADER, EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE } from '../server/http-protocol.js'
export type { ChangesEnd, SnapshotEnd, ErrorLine, RowsResponse } from '../server/http-protocol.js'
