import { randomBytes } from 'node:crypto'
import { checkFeedName } from '../../source/validate.js'
import type { FeedOptions } from '../store.js'
import type { PgQueryable } from './connection.js'

export function newEpoch(): string {
  return randomBytes(8).toString('hex')
}

/** Creates the feed (a new epoch) when missing; updates its retention when given. */
export async function ensureFeedRow(db: PgQueryable, name: string, options: FeedOptions = {}): Promise<void> {
  checkFeedName(name)
  const r = options.retention
  await db.query(
    `INSERT INTO tidemark.feeds (name, epoch, retain_changes, retain_ms, created_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name) DO ${r ? 'UPDATE SET retain_changes = excluded.retain_changes, retain_ms = excluded.retain_ms' : 'NOTHING'}`,
    [name, newEpoch(), r?.changes ?? null, r?.ageMs ?? null, Date.now()],
  )
}
