import type { Json } from '../protocol/types.js'

/**
 * One text for one JSON value, whichever store or serializer held it: object members sorted by
 * key (UTF-16 order), no white space, numbers as JavaScript prints them. Row hashes are taken over
 * this text so that a source on SQLite and a replica on PostgreSQL (jsonb reorders members) agree.
 */
export function canonicalJson(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const keys = Object.keys(value).sort()
  let out = '{'
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string
    if (i > 0) out += ','
    out += `${JSON.stringify(k)}:${canonicalJson(value[k] as Json)}`
  }
  return `${out}}`
}
