import { BadRequestError } from '../errors.js'

/** A parsed query string as fastify hands it over: a repeated name gives an array. */
export type Query = Record<string, unknown>

/** A text parameter, or undefined when absent. Given twice is a mistake, not a choice. */
export function textParam(query: Query, name: string): string | undefined {
  const value = query[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw new BadRequestError(`query parameter "${name}" is given more than once`)
  return value
}

/**
 * An integer parameter within `min..max` (both inclusive), or `fallback` when absent. Only plain
 * decimal digits are accepted: `1.5`, `1e3`, `-1`, ` 2` and `0x10` are refused, not guessed at.
 */
export function intParam(
  query: Query,
  name: string,
  bounds: { min: number; max: number; fallback: number; unit?: string },
): number {
  const text = textParam(query, name)
  if (text === undefined) return bounds.fallback
  const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(value) || value < bounds.min || value > bounds.max) {
    const unit = bounds.unit ? ` ${bounds.unit}` : ''
    const range = bounds.max === Number.MAX_SAFE_INTEGER ? `a whole number ≥ ${bounds.min}` : `a whole number from ${bounds.min} to ${bounds.max}`
    throw new BadRequestError(`query parameter "${name}" must be ${range}${unit}, got ${JSON.stringify(text)}`, {
      details: { parameter: name },
    })
  }
  return value
}

/** A position in a feed: a non-negative safe integer, 0 when absent. */
export function seqParam(query: Query, name: string): number {
  return intParam(query, name, { min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0, unit: '(a seq)' })
}
