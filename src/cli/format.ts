import type { Retention } from '../protocol/types.js'
import { formatDuration } from './duration.js'

/** The retention as a phrase: "keeps the whole log", "keeps at least the newest 100 changes and those of the last 7d". */
export function describeRetention(r: Retention): string {
  const parts: string[] = []
  if (r.changes !== undefined) parts.push(`the newest ${r.changes} change${r.changes === 1 ? '' : 's'}`)
  if (r.ageMs !== undefined) parts.push(`${parts.length > 0 ? 'those' : 'the changes'} of the last ${formatDuration(r.ageMs)}`)
  return parts.length === 0 ? 'keeps the whole log' : `keeps at least ${parts.join(' and ')}`
}

/** The retention in a table cell: `100 changes, 7d`, or `all`. */
export function formatRetention(r: Retention): string {
  const parts: string[] = []
  if (r.changes !== undefined) parts.push(`${r.changes} changes`)
  if (r.ageMs !== undefined) parts.push(formatDuration(r.ageMs))
  return parts.length === 0 ? 'all' : parts.join(', ')
}
