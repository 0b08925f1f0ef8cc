import { formatCount, formatSpan } from './format.js'

/** Where progress goes: process.stderr in the CLI; only a terminal gets it. */
export interface ProgressStream {
  isTTY?: boolean
  write(text: string): boolean
}

export interface Progress {
  /** Rows done of `total` in `phase`; drawn at most every `everyMs`. */
  update(phase: string, rows: number, total: number): void
  /** Clears the line (the command then prints its one summary line). */
  done(): void
}

const QUIET: Progress = { update() {}, done() {} }

/**
 * One line on a terminal, redrawn in place: "export customers, reading: 412,000 / 1,000,000 rows ·
 * 98,000 rows/s · 6 s left". Nothing at all when the stream is not a terminal (a pipe, a log file,
 * a test), so that scripted runs stay quiet.
 */
export function progressLine(label: string, stream: ProgressStream = process.stderr, options: { everyMs?: number; now?: () => number } = {}): Progress {
  if (!stream.isTTY) return QUIET
  const now = options.now ?? Date.now
  const everyMs = options.everyMs ?? 250
  let phase = ''
  let since = 0
  let drawnAt = -Infinity
  return {
    update(p, rows, total) {
      const t = now()
      if (p !== phase) {
        phase = p
        since = t
      } else if (t - drawnAt < everyMs) return
      drawnAt = t
      stream.write(`\r\x1b[K${describeProgress(label, phase, rows, total, t - since)}`)
    },
    done() {
      if (drawnAt > -Infinity) stream.write('\r\x1b[K')
    },
  }
}

/** The line's text, without terminal codes: rows, rate and time left once there is a rate to tell. */
export function describeProgress(label: string, phase: string, rows: number, total: number, elapsedMs: number): string {
  let text = `${label}, ${phase}: ${formatCount(rows)}${total > 0 ? ` / ${formatCount(total)}` : ''} rows`
  if (elapsedMs >= 500 && rows > 0) {
    const rate = (rows / elapsedMs) * 1000
    text += ` · ${formatCount(Math.round(rate))} rows/s`
    if (total > rows) text += ` · ${formatSpan(((total - rows) / rate) * 1000)} left`
  }
  return text
}
