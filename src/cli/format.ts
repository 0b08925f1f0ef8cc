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

/** A past moment relative to now, for people: `just now`, `4.2 s ago`, `12 min ago`, `3 h ago`, `2 d ago`. */
export function formatAgo(at: number, now: number): string {
  return `${formatSpan(Math.max(0, now - at))} ago`.replace(/^0 s ago$/, 'just now')
}

/** A span of time for people, rounded to what matters: `0.4 s`, `12 s`, `5 min`, `3 h`, `2 d`. */
export function formatSpan(ms: number): string {
  const s = ms / 1000
  if (s < 10) return `${Number(s.toFixed(1))} s`
  if (s < 120) return `${Math.round(s)} s`
  if (s < 7200) return `${Math.round(s / 60)} min`
  if (s < 172_800) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86_400)} d`
}

/** A count with thousands separators: 30000 → `30,000`. */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US')
}
