import ms, { type StringValue } from 'ms'
import { BadRequestError } from '../errors.js'

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/**
 * Parses a duration as operators type it: `30s`, `5m`, `1h`, `7d`, `2w`, `1.5h`, `250ms`, `7 days`,
 * or a plain number of milliseconds (`1500`) — the `ms` package's grammar. Returns whole
 * milliseconds; throws BadRequestError for anything else, a negative one included.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim()
  // ms() throws on an empty string and on one over 100 characters; both are just not durations.
  const parsed = trimmed === '' || trimmed.length > 100 ? undefined : (ms(trimmed as StringValue) as number | undefined)
  if (parsed === undefined || !Number.isFinite(parsed) || parsed < 0) {
    throw new BadRequestError(
      `invalid duration ${JSON.stringify(text)}: use a number of milliseconds or a number with a unit ms, s, m, h, d or w (e.g. 30s, 5m, 7d)`,
    )
  }
  const rounded = Math.round(parsed)
  if (!Number.isSafeInteger(rounded)) throw new BadRequestError(`duration ${JSON.stringify(text)} is too long`)
  return rounded
}

/** The shortest exact spelling of a duration for display: 604800000 → `7d`, 90000 → `90s`, 1500 → `1500ms`. */
export function formatDuration(value: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (value >= UNIT_MS[unit] && value % UNIT_MS[unit] === 0) return `${value / UNIT_MS[unit]}${unit}`
  }
  return `${value}ms`
}
