import { InvalidArgumentError, Option } from 'commander'
import { formatDuration, parseDuration } from './duration.js'

/**
 * Parsers for commander option and argument values. They throw commander's InvalidArgumentError,
 * which commander reports as a usage error (exit 64, EXIT.usage) naming the option.
 */

/** A whole number ≥ 0 (positions such as `--after`). */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('Expected a whole number ≥ 0.')
  }
  return Number(value)
}

/** A whole number ≥ 1 (limits, retention counts). */
export function parsePositive(value: string): number {
  const n = parseCount(value)
  if (n < 1) throw new InvalidArgumentError('Expected a whole number ≥ 1.')
  return n
}

/** A TCP port, 0 meaning "any free port". */
export function parsePort(value: string): number {
  const n = parseCount(value)
  if (n > 65535) throw new InvalidArgumentError('Expected a port number from 0 to 65535.')
  return n
}

/** A duration (`30s`, `7d`, plain ms) → ms, at least 1. */
export function parseDurationOption(value: string): number {
  let ms: number
  try {
    ms = parseDuration(value)
  } catch (error) {
    throw new InvalidArgumentError(`${capitalize((error as Error).message)}.`)
  }
  if (ms < 1) throw new InvalidArgumentError('Expected a duration of at least 1ms.')
  return ms
}

/**
 * An option taking a duration, with a default: --help shows the default as it is typed (`60s`,
 * `7d`), not as the milliseconds it is held in. Add it with `.addOption(…)`.
 */
export function durationOption(flags: string, description: string, defaultMs: number): Option {
  return new Option(flags, description).argParser(parseDurationOption).default(defaultMs, formatDuration(defaultMs))
}

/** For repeatable options: `--token a --token b` → ['a', 'b']. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/** The "Examples:" section appended to a command's --help. */
export function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** An environment variable's value, or undefined when it is unset or blank. */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim()
}
