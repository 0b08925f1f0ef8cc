import type { JsonCompatible, Seq } from '../protocol/types.js'

/**
 * The source API: records one change of a feed inside the owner's current transaction (or in a
 * transaction of its own when there is none). Each backend implements it on the owner's own
 * connection; the returned seq is final once the owner's transaction commits.
 */
export interface FeedWriter {
  readonly feed: string
  put<T>(key: string, data: T & JsonCompatible<T>): Seq | Promise<Seq>
  delete(key: string): Seq | Promise<Seq>
}
