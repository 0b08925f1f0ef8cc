import { BadRequestError } from '../errors.js'

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const
type Unit = keyof typeof UNIT_MS

/**
 * Parses a duration as operators type it: `30s`, `5m`, `1h`, `7d`, `2w`, `1.5h`, `250ms`, or a plain
 * number of milliseconds (`1500`). Returns whole milliseconds; throws BadRequestError otherwise.
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(text)
  if (!match) {
    throw new BadRequestError(
      `invalid duration ${JSON.stringify(text)}: use a number of milliseconds or a number with a unit ms, s, m, h, d or w (e.g. 30s, 5m, 7d)`,
    )
  }
  const unit = ((match[2] ?? 'ms').toLowerCase()) as Unit
  const ms = Math.round(Number(match[1]) * UNIT_MS[unit])
  if (!Number.isSafeInteger(ms)) throw new BadRequestError(`duration ${JSON.stringify(text)} is too long`)
  return ms
}

/** The shortest exact spelling of a duration for display: 604800000 → `7d`, 90000 → `90s`, 1500 → `1500ms`. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`
  }
  return `${ms}ms`
}
