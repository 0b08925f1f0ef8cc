import { BadRequestError } from '../errors.js'

/**
 * Which columns may key a captured table (`track --key`), the rule both backends apply with the
 * facts their catalogs give. A key that two rows share merges them into one key of the feed, so a
 * replica silently loses rows: the named columns must be the table's primary key or a unique
 * constraint's (or a superset of one), every one of them NOT NULL.
 *
 * A composite key is named as `a,b` (the order given is the order in the key). Its key text is a
 * JSON array of the columns' values, `[1,"x"]` (no spaces), on both backends; a single column's
 * key is its value as text, as before.
 */

/** A unique constraint or index of the table: its columns, whether it is the primary key. */
export interface UniqueSet {
  columns: string[]
  primary: boolean
}

/** The columns `spec` names: `spec` itself when the table has a column of that name, else split on commas. */
export function keyColumnsOf(spec: string, columns: readonly string[]): string[] {
  if (columns.includes(spec)) return [spec]
  return spec.split(',').map((c) => c.trim())
}

/**
 * Checks the named key columns against the table's columns, NOT NULL columns and unique sets;
 * throws a `bad-request` saying what is wrong and how to fix it.
 */
export function checkTrackKey(table: string, spec: string, columns: readonly string[], notNull: ReadonlySet<string>, uniques: readonly UniqueSet[]): string[] {
  const key = keyColumnsOf(spec, columns)
  const missing = key.filter((c) => !columns.includes(c))
  if (key.some((c) => c === '') || missing.length > 0) {
    throw new BadRequestError(`table "${table}" has no column ${missing.map((c) => `"${c}"`).join(', ') || `"${spec}"`} (it has ${columns.join(', ')})`)
  }
  if (new Set(key).size !== key.length) throw new BadRequestError(`key "${spec}" names a column twice`)
  const named = new Set(key)
  const covered = uniques.find((u) => u.columns.every((c) => named.has(c)))
  const nullable = key.filter((c) => !notNull.has(c))
  if (covered && nullable.length === 0) return key
  const candidates = uniques
    .filter((u) => u.columns.every((c) => notNull.has(c)))
    .sort((x, y) => Number(y.primary) - Number(x.primary) || x.columns.length - y.columns.length || x.columns.join(',').localeCompare(y.columns.join(',')))
  const fix =
    candidates.length > 0
      ? `key it by ${candidates.map((u) => `"${u.columns.join(',')}"${u.primary ? ' (primary key)' : ''}`).join(' or ')}`
      : `give it a primary key (or a UNIQUE constraint on NOT NULL columns) and track again`
  const what = key.length === 1 ? `column "${key[0]}"` : `columns "${key.join(',')}"`
  const why = !covered
    ? `${what} of table "${table}" ${key.length === 1 ? 'is' : 'are'} not its primary key or unique: rows sharing a value would be merged into one key`
    : `${what} of table "${table}" ${nullable.length === 1 ? `has nullable column "${nullable[0]}"` : `have nullable columns ${nullable.map((c) => `"${c}"`).join(', ')}`}: a key must be NOT NULL`
  throw new BadRequestError(`${why}; ${fix}`)
}
