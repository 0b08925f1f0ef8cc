import { BadRequestError, TooLargeError } from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import type { Json } from '../protocol/types.js'

export function checkFeedName(name: unknown): string {
  if (typeof name !== 'string' || !LIMITS.feedName.test(name)) {
    throw new BadRequestError(
      `invalid feed name ${JSON.stringify(name)}: use 1–64 letters, digits, "_", "-" or "." (not first)`,
    )
  }
  return name
}

export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new BadRequestError(`a key must be a non-empty string, got ${describe(key)}`)
  }
  if (Buffer.byteLength(key, 'utf8') > LIMITS.keyBytes) {
    throw new TooLargeError(`key of ${Buffer.byteLength(key, 'utf8')} bytes is over the limit of ${LIMITS.keyBytes}`)
  }
  if (!key.isWellFormed()) throw new BadRequestError('a key must be well-formed Unicode (it has a lone surrogate)')
  return key
}

/** Serializes `data` to JSON text, refusing what JSON cannot hold faithfully and what is too large. */
export function serializeData(data: unknown): string {
  checkJson(data, '$', 0)
  const text = JSON.stringify(data)
  if (text.length > LIMITS.dataBytes || Buffer.byteLength(text, 'utf8') > LIMITS.dataBytes) {
    throw new TooLargeError(`data of ${Buffer.byteLength(text, 'utf8')} bytes is over the limit of ${LIMITS.dataBytes}`)
  }
  return text
}

function checkJson(value: unknown, path: string, depth: number): asserts value is Json {
  if (depth > 100) throw new BadRequestError(`data is nested more than 100 levels deep (at ${path})`)
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) throw new BadRequestError(`data is not JSON-able: ${value} at ${path}`)
      return
    case 'object': {
      if (value === null) return
      if (Array.isArray(value)) {
        value.forEach((item, i) => checkJson(item, `${path}[${i}]`, depth + 1))
        return
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) {
        throw new BadRequestError(`data is not JSON-able: ${proto?.constructor?.name ?? 'object'} at ${path}`)
      }
      for (const [k, v] of Object.entries(value)) checkJson(v, `${path}.${k}`, depth + 1)
      return
    }
    default:
      throw new BadRequestError(`data is not JSON-able: ${typeof value} at ${path}`)
  }
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value
}
