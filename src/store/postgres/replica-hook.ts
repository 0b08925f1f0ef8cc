import type pg from 'pg'
import { ApplyFailedError, StoreUnavailableError } from '../../errors.js'
import type { Change } from '../../protocol/types.js'
import type { ApplyContext, ApplyHook } from '../replica-store.js'
import { translatePgError } from './connection.js'

/** Runs (and awaits) the projection hook on the transaction's connection; a throw is ApplyFailedError, naming the change. */
export async function runHook(hook: ApplyHook<pg.ClientBase>, change: Change, client: pg.ClientBase, cause: ApplyContext['cause']): Promise<void> {
  try {
    await hook(change, client, { cause })
  } catch (error) {
    // The hook's query met the database going away (a restart, a dropped connection): not a fault
    // of the hook, and the replica must retry the transaction when the database is back, not stop.
    const translated = translatePgError(error, "the replica's database")
    if (translated instanceof StoreUnavailableError) throw translated
    throw new ApplyFailedError(change.seq, change.key, error)
  }
}
