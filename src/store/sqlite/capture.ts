import type { Database } from 'better-sqlite3'
import { BadRequestError, ConflictError } from '../../errors.js'
import type { TrackedTable } from '../../protocol/types.js'
import { checkFeedName } from '../../source/validate.js'
import type { TrackOptions } from '../store.js'
import { checkTrackKey, type UniqueSet } from '../tracked-key.js'
import { NOW_MS_SQL, OP_DELETE, OP_UPSERT } from './schema.js'
import { ensureFeedRow } from './sqlite-source.js'

/**
 * Table capture: triggers on the owner's table write each insert, update and delete into the feed
 * inside the writer's own transaction, whoever the writer is (the app, a migration, the `sqlite3`
 * shell). Plain SQL only, so any SQLite ≥ 3.38 client can fire them.
 *
 * A trigger cannot tell where the writer's transaction ends, so captured changes carry `txs = NULL`
 * and travel as one-change transactions (docs/protocol.md, "Transactions of captured tables").
 * Columns are read when `track` runs: run it again after adding a column.
 */

const quoteId = (name: string): string => `"${name.replaceAll('"', '""')}"`
const quoteStr = (text: string): string => `'${text.replaceAll("'", "''")}'`

// SQLite allows 127 arguments per function call by default: build wide rows in slices.
const PAIRS_PER_CALL = 60

function jsonOf(row: 'NEW' | 'OLD' | '', columns: string[]): string {
  const ref = (c: string) => (row ? `${row}.${quoteId(c)}` : quoteId(c))
  const slices: string[][] = []
  for (let i = 0; i < columns.length; i += PAIRS_PER_CALL) slices.push(columns.slice(i, i + PAIRS_PER_CALL))
  let expr = `json_object(${(slices[0] ?? []).map((c) => `${quoteStr(c)}, ${ref(c)}`).join(', ')})`
  for (const slice of slices.slice(1)) {
    expr = `json_set(${expr}, ${slice.map((c) => `${quoteStr(`$."${c.replaceAll('"', '\\"')}"`)}, ${ref(c)}`).join(', ')})`
  }
  return expr
}

function triggerName(feed: string, event: string): string {
  return quoteId(`tidemark_capture_${feed}_${event}`)
}

function appendChange(feed: string, keyExpr: string, op: number, dataExpr: string, when = ''): string {
  const f = quoteStr(feed)
  const cond = when ? ` AND ${when}` : ''
  return `
  UPDATE tidemark_feeds SET head = head + 1 WHERE name = ${f}${cond};
  INSERT INTO tidemark_changes (feed, seq, key, op, data, txs, ts)
    SELECT name, head, CAST(${keyExpr} AS TEXT), ${op}, ${dataExpr}, NULL, ${NOW_MS_SQL}
    FROM tidemark_feeds WHERE name = ${f}${cond};`
}

export function tableColumns(db: Database, table: string): Array<{ name: string; type: string }> {
  return db.prepare('SELECT name, type FROM pragma_table_info(?)').all(table) as Array<{ name: string; type: string }>
}

/**
 * The table's NOT NULL columns and unique sets (tracked-key.ts). SQLite's quirks: an `INTEGER
 * PRIMARY KEY` is the rowid (never NULL, and no index lists it); other primary key columns of a
 * rowid table accept NULL unless declared NOT NULL; a WITHOUT ROWID table's never do.
 */
function keyFacts(db: Database, table: string): { notNull: Set<string>; uniques: UniqueSet[] } {
  const info = db.prepare('SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info(?) ORDER BY pk').all(table) as Array<{
    name: string
    type: string
    nn: number
    pk: number
  }>
  const withoutRowid = (db.prepare('SELECT wr FROM pragma_table_list(?)').pluck().get(table) as number | undefined) === 1
  const notNull = new Set(info.filter((c) => c.nn === 1).map((c) => c.name))
  const pk = info.filter((c) => c.pk > 0).map((c) => c.name)
  const rowidAlias = !withoutRowid && pk.length === 1 && info.find((c) => c.pk > 0)?.type.toUpperCase() === 'INTEGER'
  if (rowidAlias || withoutRowid) for (const c of pk) notNull.add(c)
  const uniques: UniqueSet[] = []
  const indexes = db.prepare('SELECT name, "unique" AS u, origin, partial FROM pragma_index_list(?)').all(table) as Array<{
    name: string
    u: number
    origin: string
    partial: number
  }>
  for (const index of indexes) {
    if (index.u !== 1 || index.partial === 1) continue
    const cols = db.prepare('SELECT cid, name FROM pragma_index_info(?) ORDER BY seqno').all(index.name) as Array<{ cid: number; name: string | null }>
    if (cols.some((c) => c.cid < 0 || c.name === null)) continue
    uniques.push({ columns: cols.map((c) => c.name as string), primary: index.origin === 'pk' })
  }
  if (pk.length > 0 && !uniques.some((u) => u.primary)) uniques.unshift({ columns: pk, primary: true })
  return { notNull, uniques }
}

/** The SQL of a row's key text (tracked-key.ts): one column's value, or a JSON array of several. */
function keyExpr(row: 'NEW' | 'OLD' | '', key: string[]): string {
  const ref = (c: string) => (row ? `${row}.${quoteId(c)}` : quoteId(c))
  return key.length === 1 ? ref(key[0] as string) : `json_array(${key.map(ref).join(', ')})`
}
const anyNull = (row: 'NEW' | '', key: string[]): string => key.map((c) => `${row ? `${row}.` : ''}${quoteId(c)} IS NULL`).join(' OR ')

/** `catchUp` brings the feed's state up to its head (the indexer), inside the capture's transaction. */
export function installCapture(db: Database, options: TrackOptions, catchUp: (feed: string) => void): { feed: string; captured: number } {
  const feed = checkFeedName(options.feed ?? options.table)
  const columns = tableColumns(db, options.table)
  if (columns.length === 0) throw new BadRequestError(`no table "${options.table}" in this database`)
  const facts = keyFacts(db, options.table)
  const key = checkTrackKey(
    options.table,
    options.keyColumn,
    columns.map((c) => c.name),
    facts.notNull,
    facts.uniques,
  )
  const blobs = columns.filter((c) => /BLOB/i.test(c.type)).map((c) => c.name)
  if (blobs.length > 0) {
    throw new BadRequestError(`cannot capture BLOB columns as JSON: ${blobs.join(', ')} of table "${options.table}"`)
  }
  const names = columns.map((c) => c.name)
  const tracked: TrackedTable = { table: options.table, keyColumn: options.keyColumn, columns: names, active: true }

  let captured = 0
  db.transaction(() => {
    const existing = db.prepare('SELECT head, tracked FROM tidemark_feeds WHERE name = ?').get(feed) as
      | { head: number; tracked: string | null }
      | undefined
    if (existing && existing.tracked === null && existing.head > 0) {
      throw new ConflictError(`feed "${feed}" already has ${existing.head} changes written through the API: track into another feed`)
    }
    const previous = existing?.tracked ? (JSON.parse(existing.tracked) as TrackedTable) : undefined
    if (previous && previous.table !== options.table) {
      throw new ConflictError(`feed "${feed}" ${previous.active === false ? 'captured' : 'already captures'} table "${previous.table}"`)
    }
    ensureFeedRow(db, feed, options.retention ? { retention: options.retention } : {})
    dropTriggers(db, feed)

    const nullKey = (row: 'NEW') =>
      `SELECT RAISE(ABORT, ${quoteStr(`tidemark: ${options.table}.${key.join(' or ')} is NULL; feed ${feed} needs a key`)}) WHERE ${anyNull(row, key)};`
    const keyChanged = key.map((c) => `OLD.${quoteId(c)} IS NOT NEW.${quoteId(c)}`).join(' OR ')
    const table = quoteId(options.table)
    db.exec(`CREATE TRIGGER ${triggerName(feed, 'insert')} AFTER INSERT ON ${table} BEGIN
  ${nullKey('NEW')}${appendChange(feed, keyExpr('NEW', key), OP_UPSERT, jsonOf('NEW', names))}
END;`)
    db.exec(`CREATE TRIGGER ${triggerName(feed, 'update')} AFTER UPDATE ON ${table} BEGIN
  ${nullKey('NEW')}${appendChange(feed, keyExpr('OLD', key), OP_DELETE, 'NULL', `(${keyChanged})`)}${appendChange(feed, keyExpr('NEW', key), OP_UPSERT, jsonOf('NEW', names))}
END;`)
    db.exec(`CREATE TRIGGER ${triggerName(feed, 'delete')} AFTER DELETE ON ${table} BEGIN${appendChange(
      feed,
      keyExpr('OLD', key),
      OP_DELETE,
      'NULL',
    )}
END;`)

    if (!previous || previous.active === false) {
      // The rows in the table become one transaction of the feed, under the same lock that
      // installs the triggers: nothing written before or after is missed or doubled. After an
      // untrack, keys the table lost meanwhile are deleted in that same transaction.
      let head = (db.prepare('SELECT head FROM tidemark_feeds WHERE name = ?').pluck().get(feed) as number) ?? 0
      const txStart = head + 1
      if (previous) {
        catchUp(feed)
        const gone = db
          .prepare(
            `INSERT INTO tidemark_changes (feed, seq, key, op, data, txs, ts)
             SELECT feed, ? + row_number() OVER (ORDER BY key), key, ${OP_DELETE}, NULL, ?, ${NOW_MS_SQL}
             FROM tidemark_state WHERE feed = ? AND data IS NOT NULL
               AND key NOT IN (SELECT CAST(${keyExpr('', key)} AS TEXT) FROM ${table} WHERE NOT (${anyNull('', key)}))`,
          )
          .run(head, txStart, feed).changes
        db.prepare('UPDATE tidemark_feeds SET head = head + ? WHERE name = ?').run(gone, feed)
        head += gone
      }
      const info = db
        .prepare(
          `INSERT INTO tidemark_changes (feed, seq, key, op, data, txs, ts)
           SELECT ?, ? + row_number() OVER (ORDER BY CAST(${keyExpr('', key)} AS TEXT)), CAST(${keyExpr('', key)} AS TEXT), ${OP_UPSERT},
                  ${jsonOf('', names)}, ? + 1, ${NOW_MS_SQL}
           FROM ${table} WHERE NOT (${anyNull('', key)})`,
        )
        .run(feed, head, txStart - 1)
      captured = info.changes
      db.prepare('UPDATE tidemark_feeds SET head = head + ? WHERE name = ?').run(captured, feed)
    }
    db.prepare('UPDATE tidemark_feeds SET tracked = ? WHERE name = ?').run(JSON.stringify(tracked), feed)
  }).immediate()
  return { feed, captured }
}

export function removeCapture(db: Database, feed: string): void {
  db.transaction(() => {
    dropTriggers(db, feed)
    const row = db.prepare('SELECT tracked FROM tidemark_feeds WHERE name = ?').pluck().get(feed) as string | null
    if (row) db.prepare('UPDATE tidemark_feeds SET tracked = ? WHERE name = ?').run(JSON.stringify({ ...(JSON.parse(row) as TrackedTable), active: false }), feed)
  }).immediate()
}

function dropTriggers(db: Database, feed: string): void {
  for (const event of ['insert', 'update', 'delete']) db.exec(`DROP TRIGGER IF EXISTS ${triggerName(feed, event)}`)
}
