import { hash } from 'node:crypto'
import type pg from 'pg'
import { BadRequestError, ConflictError } from '../../errors.js'
import type { TrackedTable } from '../../protocol/types.js'
import { checkFeedName } from '../../source/validate.js'
import type { TrackOptions } from '../store.js'
import { checkTrackKey, keyColumnsOf, type UniqueSet } from '../tracked-key.js'
import { ensureFeedRow } from './feeds.js'
import { OP_DELETE, OP_UPSERT, PENDING_SLOT_SQL, PENDING_SLOTS } from './schema.js'

/**
 * Table capture on PostgreSQL: an AFTER ROW trigger on the owner's table writes each insert, update
 * and delete into tidemark.pending inside the writer's own transaction, whoever the writer is (the
 * app, a migration, psql). Like the API, it takes no lock on the feed; the sequencer orders the
 * changes after commit. `data` is `row_to_json(NEW)`: every column the row has when it is written,
 * so a column added or dropped later simply appears in (or leaves) the following changes, with no
 * need to track again. A TRUNCATE fires no row triggers: a BEFORE TRUNCATE statement trigger
 * records a delete for every key the table still holds, in the truncating transaction (so a
 * TRUNCATE of a captured table costs time in proportion to its rows, like a DELETE).
 */

const quoteId = (name: string): string => `"${name.replaceAll('"', '""')}"`
const quoteStr = (text: string): string => `'${text.replaceAll("'", "''")}'`

/** Identifiers are at most 63 bytes and feed names up to 64 characters: name objects by a hash. */
function objectSuffix(feed: string): string {
  return hash('md5', feed, 'hex').slice(0, 16)
}
const functionName = (feed: string): string => `tidemark.${quoteId(`capture_${objectSuffix(feed)}`)}`
const triggerName = (feed: string): string => quoteId(`tidemark_capture_${objectSuffix(feed)}`)
const truncateFunctionName = (feed: string): string => `tidemark.${quoteId(`truncate_${objectSuffix(feed)}`)}`
const truncateTriggerName = (feed: string): string => quoteId(`tidemark_truncate_${objectSuffix(feed)}`)

/** The SQL of a row's key text (tracked-key.ts): one column's value as text, or a JSON array of several. */
function keyExpr(row: string, key: string[]): string {
  if (key.length === 1) return `${row}.${quoteId(key[0] as string)}::text`
  return `'[' || ${key.map((c) => `to_json(${row}.${quoteId(c)})::text`).join(` || ',' || `)} || ']'`
}
const anyNull = (row: string, key: string[]): string => key.map((c) => `${row}.${quoteId(c)} IS NULL`).join(' OR ')
const tupleOf = (row: string, key: string[]): string =>
  key.length === 1 ? `${row}.${quoteId(key[0] as string)}` : `(${key.map((c) => `${row}.${quoteId(c)}`).join(', ')})`

/**
 * An insert into the queue's current partition, named (schema.ts, PENDING_SLOTS): a row inserted
 * through the partitioned parent is routed at every execution, which the owner would pay per row.
 */
function enqueue(columns: string, values: string): string {
  const branch = (i: number) => `INSERT INTO tidemark.pending_${i} (${columns}, slot) VALUES (${values}, ${i});`
  const lines = Array.from({ length: PENDING_SLOTS }, (_, i) => (i === 0 ? `IF part = 0 THEN ${branch(0)}` : i < PENDING_SLOTS - 1 ? `ELSIF part = ${i} THEN ${branch(i)}` : `ELSE ${branch(i)}`))
  return `${lines.join('\n    ')}\n    END IF;`
}

function captureFunction(feed: string, key: string[]): string {
  const f = quoteStr(feed)
  const nullKey = quoteStr(`tidemark: the key column ${key.join(' or ')} is NULL; feed ${feed} needs a key`)
  return `
CREATE OR REPLACE FUNCTION ${functionName(feed)}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  part smallint := ${PENDING_SLOT_SQL};
BEGIN
  IF TG_OP = 'DELETE' THEN
    ${enqueue('feed, key, op', `${f}, ${keyExpr('OLD', key)}, ${OP_DELETE}`)}
    RETURN NULL;
  END IF;
  IF ${anyNull('NEW', key)} THEN RAISE EXCEPTION ${nullKey}; END IF;
  IF TG_OP = 'UPDATE' AND ${tupleOf('OLD', key)} IS DISTINCT FROM ${tupleOf('NEW', key)} THEN
    ${enqueue('feed, key, op', `${f}, ${keyExpr('OLD', key)}, ${OP_DELETE}`)}
  END IF;
  ${enqueue('feed, key, op, data', `${f}, ${keyExpr('NEW', key)}, ${OP_UPSERT}, row_to_json(NEW)::text`)}
  RETURN NULL;
END
$fn$`
}

/** Deletes of every key still in the table, the table named at run time (it may have been renamed). */
function truncateFunction(feed: string, key: string[]): string {
  // A format() string: the key's SQL has its % doubled.
  const insert = `INSERT INTO tidemark.pending (feed, key, op) SELECT %L, ${keyExpr('t', key).replaceAll('%', '%%')}, ${OP_DELETE} FROM %I.%I t WHERE NOT (${anyNull('t', key).replaceAll('%', '%%')}) ORDER BY 2`
  return `
CREATE OR REPLACE FUNCTION ${truncateFunctionName(feed)}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  EXECUTE format(${quoteStr(insert)}, ${quoteStr(feed)}, TG_TABLE_SCHEMA, TG_TABLE_NAME);
  RETURN NULL;
END
$fn$`
}

async function installTruncateTrigger(client: pg.ClientBase, feed: string, key: string[], regclass: string): Promise<void> {
  await client.query(truncateFunction(feed, key))
  await client.query(`DROP TRIGGER IF EXISTS ${truncateTriggerName(feed)} ON ${regclass}`)
  await client.query(
    `CREATE TRIGGER ${truncateTriggerName(feed)} BEFORE TRUNCATE ON ${regclass} FOR EACH STATEMENT EXECUTE FUNCTION ${truncateFunctionName(feed)}()`,
  )
}

interface TableFacts {
  regclass: string
  columns: string[]
  notNull: Set<string>
}

export async function tableColumns(client: pg.ClientBase, table: string): Promise<TableFacts | undefined> {
  const { rows } = await client.query<{ regclass: string | null }>('SELECT to_regclass($1)::text AS regclass', [table])
  const regclass = rows[0]?.regclass
  if (!regclass) return undefined
  const cols = await client.query<{ attname: string; attnotnull: boolean }>(
    'SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum',
    [regclass],
  )
  return { regclass, columns: cols.rows.map((c) => c.attname), notNull: new Set(cols.rows.filter((c) => c.attnotnull).map((c) => c.attname)) }
}

/** The table's primary key and unique indexes on plain columns (valid, not partial; INCLUDE columns left out). */
async function uniqueSets(client: pg.ClientBase, regclass: string): Promise<UniqueSet[]> {
  const { rows } = await client.query<{ primary: boolean; columns: string[] }>(
    `SELECT i.indisprimary AS primary,
            array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE k.n <= i.indnkeyatts ORDER BY k.n)::text[] AS columns
     FROM pg_index i
     WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
     ORDER BY NOT i.indisprimary, i.indexrelid`,
    [regclass],
  )
  return rows
}

/**
 * Installs capture inside `client`'s open transaction; the caller commits. `previous` state must be
 * up to date (sequenced and indexed) when re-tracking after an untrack.
 */
export async function installCapture(client: pg.ClientBase, options: TrackOptions): Promise<{ feed: string; captured: number }> {
  const feed = checkFeedName(options.feed ?? options.table)
  const named = (await client.query<{ regclass: string | null }>('SELECT to_regclass($1)::text AS regclass', [options.table])).rows[0]?.regclass
  if (!named) throw new BadRequestError(`no table "${options.table}" in this database`)
  // Writers of the table wait from here to commit (readers do not): nothing written before the
  // trigger exists is missed, nothing after it is copied twice. The lock also keeps the table's
  // columns and constraints as they are checked below.
  await client.query(`LOCK TABLE ${named} IN SHARE ROW EXCLUSIVE MODE`)
  const found = await tableColumns(client, named)
  if (!found) throw new BadRequestError(`no table "${options.table}" in this database`)
  const { regclass, columns, notNull } = found
  const key = checkTrackKey(options.table, options.keyColumn, columns, notNull, await uniqueSets(client, regclass))
  const existing = (
    await client.query<{ head: string; tracked: string | null; pending: boolean }>(
      `SELECT head, tracked, EXISTS (SELECT 1 FROM tidemark.pending p WHERE p.feed = f.name) AS pending
       FROM tidemark.feeds f WHERE name = $1 FOR UPDATE`,
      [feed],
    )
  ).rows[0]
  if (existing && existing.tracked === null && (Number(existing.head) > 0 || existing.pending)) {
    throw new ConflictError(`feed "${feed}" already has changes written through the API: track into another feed`)
  }
  const previous = existing?.tracked ? (JSON.parse(existing.tracked) as TrackedTable) : undefined
  if (previous && previous.table !== options.table) {
    throw new ConflictError(`feed "${feed}" ${previous.active === false ? 'captured' : 'already captures'} table "${previous.table}"`)
  }
  await ensureFeedRow(client, feed, options.retention ? { retention: options.retention } : {})
  await client.query(captureFunction(feed, key))
  await client.query(`DROP TRIGGER IF EXISTS ${triggerName(feed)} ON ${regclass}`)
  await client.query(
    `CREATE TRIGGER ${triggerName(feed)} AFTER INSERT OR UPDATE OR DELETE ON ${regclass} FOR EACH ROW EXECUTE FUNCTION ${functionName(feed)}()`,
  )
  await installTruncateTrigger(client, feed, key, regclass)
  let captured = 0
  if (!previous || previous.active === false) {
    // The table's rows become one transaction of the feed (this one). After an untrack, keys the
    // table lost meanwhile are deleted in that same transaction.
    if (previous) {
      await client.query(
        `INSERT INTO tidemark.pending (feed, key, op)
         SELECT $1, s.key, ${OP_DELETE} FROM tidemark.state s
         WHERE s.feed = $1 AND s.data IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ${regclass} t WHERE ${keyExpr('t', key)} = s.key)
         ORDER BY s.key`,
        [feed],
      )
    }
    const copied = await client.query(
      `INSERT INTO tidemark.pending (feed, key, op, data)
       SELECT $1, ${keyExpr('t', key)}, ${OP_UPSERT}, row_to_json(t)::text FROM ${regclass} t
       WHERE NOT (${anyNull('t', key)}) ORDER BY (${keyExpr('t', key)}) COLLATE "C"`,
      [feed],
    )
    captured = copied.rowCount ?? 0
  }
  const tracked: TrackedTable = { table: options.table, keyColumn: options.keyColumn, columns, active: true }
  await client.query('UPDATE tidemark.feeds SET tracked = $1 WHERE name = $2', [JSON.stringify(tracked), feed])
  return { feed, captured }
}

/** Runs `fn` for every actively tracked table that still exists (schema migrations); the rest are left for `track` to report. */
async function eachTrackedTable(client: pg.ClientBase, fn: (feed: string, key: string[], regclass: string) => Promise<unknown>): Promise<void> {
  const { rows } = await client.query<{ name: string; tracked: string }>('SELECT name, tracked FROM tidemark.feeds WHERE tracked IS NOT NULL ORDER BY name')
  for (const { name: feed, tracked: text } of rows) {
    const tracked = JSON.parse(text) as TrackedTable
    if (tracked.active === false) continue
    const found = await tableColumns(client, tracked.table)
    if (found) await fn(feed, keyColumnsOf(tracked.keyColumn, found.columns), found.regclass)
  }
}

/** Gives every tracked table the TRUNCATE trigger (migration 2: tables tracked before TRUNCATE was captured). */
export function installMissingTruncateCapture(client: pg.ClientBase): Promise<void> {
  return eachTrackedTable(client, (feed, key, regclass) => installTruncateTrigger(client, feed, key, regclass))
}

/** Re-creates every tracked table's capture function (migration 4: the queue's layout changed). */
export function reinstallCaptureFunctions(client: pg.ClientBase): Promise<void> {
  return eachTrackedTable(client, (feed, key) => client.query(captureFunction(feed, key)))
}

/** Drops the trigger and its function inside `client`'s open transaction; the feed keeps its log. */
export async function removeCapture(client: pg.ClientBase, feed: string, tracked: TrackedTable): Promise<void> {
  const found = await tableColumns(client, tracked.table)
  if (found) {
    await client.query(`DROP TRIGGER IF EXISTS ${triggerName(feed)} ON ${found.regclass}`)
    await client.query(`DROP TRIGGER IF EXISTS ${truncateTriggerName(feed)} ON ${found.regclass}`)
  }
  await client.query(`DROP FUNCTION IF EXISTS ${functionName(feed)}()`)
  await client.query(`DROP FUNCTION IF EXISTS ${truncateFunctionName(feed)}()`)
  await client.query('UPDATE tidemark.feeds SET tracked = $1 WHERE name = $2', [JSON.stringify({ ...tracked, active: false }), feed])
}
