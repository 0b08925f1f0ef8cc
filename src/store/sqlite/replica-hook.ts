import type { Database } from 'better-sqlite3'
import { ApplyFailedError } from '../../errors.js'
import type { Change } from '../../protocol/types.js'
import type { ApplyContext, ApplyHook } from '../replica-store.js'

/**
 * Runs the projection hook inside a SQLite transaction: a throw is ApplyFailedError (naming the
 * change), and so is a promise returned (better-sqlite3 transactions cannot span an `await`).
 */
export function runHook(hook: ApplyHook<Database>, change: Change, db: Database, cause: ApplyContext['cause']): void {
  let result: unknown
  try {
    result = hook(change, db, { cause })
  } catch (error) {
    throw new ApplyFailedError(change.seq, change.key, error)
  }
  if (isThenable(result)) {
    // It will settle outside the transaction; keep its rejection from going unhandled.
    result.then(undefined, () => {})
    throw new ApplyFailedError(
      change.seq,
      change.key,
      new TypeError('the apply hook returned a promise: it runs inside the SQLite transaction and must be synchronous (no async, no await)'),
    )
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}
