import { hash } from 'node:crypto'
import type pg from 'pg'
import { BadRequestError, ConflictError } from '../../errors.js'
import type { TrackedTable } from '../../protocol/types.js'
import { checkFeedName } from '../../source/validate.js'
import type { TrackOptions } from '../store.js'
import { ensureFeedRow } from './feeds.js'
import { OP_DELETE, OP_UPSERT } from './schema.js'

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

function captureFunction(feed: string, keyColumn: string): string {
  const f = quoteStr(feed)
  const k = quoteId(keyColumn)
  const nullKey = quoteStr(`tidemark: the key column ${keyColumn} is NULL; feed ${feed} needs a key`)
  return `
CREATE OR REPLACE FUNCTION ${functionName(feed)}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO tidemark.pending (feed, key, op) VALUES (${f}, OLD.${k}::text, ${OP_DELETE});
    RETURN NULL;
  END IF;
  IF NEW.${k} IS NULL THEN RAISE EXCEPTION ${nullKey}; END IF;
  IF TG_OP = 'UPDATE' AND OLD.${k} IS DISTINCT FROM NEW.${k} THEN
    INSERT INTO tidemark.pending (feed, key, op) VALUES (${f}, OLD.${k}::text, ${OP_DELETE});
  END IF;
  INSERT INTO tidemark.pending (feed, key, op, data) VALUES (${f}, NEW.${k}::text, ${OP_UPSERT}, row_to_json(NEW)::text);
  RETURN NULL;
END
$fn$`
}

/** Deletes of every key still in the table, the table named at run time (it may have been renamed). */
function truncateFunction(feed: string, keyColumn: string): string {
  return `
CREATE OR REPLACE FUNCTION ${truncateFunctionName(feed)}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  EXECUTE format(
    'INSERT INTO tidemark.pending (feed, key, op) SELECT %L, t.%I::text, ${OP_DELETE} FROM %I.%I t WHERE t.%I IS NOT NULL ORDER BY 2',
    ${quoteStr(feed)}, ${quoteStr(keyColumn)}, TG_TABLE_SCHEMA, TG_TABLE_NAME, ${quoteStr(keyColumn)});
  RETURN NULL;
END
$fn$`
}

async function installTruncateTrigger(client: pg.ClientBase, feed: string, keyColumn: string, regclass: string): Promise<void> {
  await client.query(truncateFunction(feed, keyColumn))
  await client.query(`DROP TRIGGER IF EXISTS ${truncateTriggerName(feed)} ON ${regclass}`)
  await client.query(
    `CREATE TRIGGER ${truncateTriggerName(feed)} BEFORE TRUNCATE ON ${regclass} FOR EACH STATEMENT EXECUTE FUNCTION ${truncateFunctionName(feed)}()`,
  )
}

export async function tableColumns(client: pg.ClientBase, table: string): Promise<{ regclass: string; columns: string[] } | undefined> {
  const { rows } = await client.query<{ regclass: string | null }>('SELECT to_regclass($1)::text AS regclass', [table])
  const regclass = rows[0]?.regclass
  if (!regclass) return undefined
  const cols = await client.query<{ attname: string }>(
    'SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum',
    [regclass],
  )
  return { regclass, columns: cols.rows.map((c) => c.attname) }
}

/**
 * Installs capture inside `client`'s open transaction; the caller commits. `previous` state must be
 * up to date (sequenced and indexed) when re-tracking after an untrack.
 */
export async function installCapture(client: pg.ClientBase, options: TrackOptions): Promise<{ feed: string; captured: number }> {
  const feed = checkFeedName(options.feed ?? options.table)
  const found = await tableColumns(client, options.table)
  if (!found) throw new BadRequestError(`no table "${options.table}" in this database`)
  const { regclass, columns } = found
  if (!columns.includes(options.keyColumn)) {
    throw new BadRequestError(`table "${options.table}" has no column "${options.keyColumn}" (it has ${columns.join(', ')})`)
  }
  // Writers of the table wait from here to commit (readers do not): nothing written before the
  // trigger exists is missed, nothing after it is copied twice.
  await client.query(`LOCK TABLE ${regclass} IN SHARE ROW EXCLUSIVE MODE`)
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
  await client.query(captureFunction(feed, options.keyColumn))
  await client.query(`DROP TRIGGER IF EXISTS ${triggerName(feed)} ON ${regclass}`)
  await client.query(
    `CREATE TRIGGER ${triggerName(feed)} AFTER INSERT OR UPDATE OR DELETE ON ${regclass} FOR EACH ROW EXECUTE FUNCTION ${functionName(feed)}()`,
  )
  await installTruncateTrigger(client, feed, options.keyColumn, regclass)
  let captured = 0
  if (!previous || previous.active === false) {
    const k = quoteId(options.keyColumn)
    // The table's rows become one transaction of the feed (this one). After an untrack, keys the
    // table lost meanwhile are deleted in that same transaction.
    if (previous) {
      await client.query(
        `INSERT INTO tidemark.pending (feed, key, op)
         SELECT $1, s.key, ${OP_DELETE} FROM tidemark.state s
         WHERE s.feed = $1 AND s.data IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM ${regclass} t WHERE t.${k}::text = s.key)
         ORDER BY s.key`,
        [feed],
      )
    }
    const copied = await client.query(
      `INSERT INTO tidemark.pending (feed, key, op, data)
       SELECT $1, t.${k}::text, ${OP_UPSERT}, row_to_json(t)::text FROM ${regclass} t
       WHERE t.${k} IS NOT NULL ORDER BY t.${k}::text COLLATE "C"`,
      [feed],
    )
    captured = copied.rowCount ?? 0
  }
  const tracked: TrackedTable = { table: options.table, keyColumn: options.keyColumn, columns, active: true }
  await client.query('UPDATE tidemark.feeds SET tracked = $1 WHERE name = $2', [JSON.stringify(tracked), feed])
  return { feed, captured }
}

/**
 * Gives every actively tracked table that lacks it the TRUNCATE trigger (a schema migration: tables
 * tracked before TRUNCATE was captured). A table that no longer exists is left for `track` to report.
 */
export async function installMissingTruncateCapture(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ name: string; tracked: string }>('SELECT name, tracked FROM tidemark.feeds WHERE tracked IS NOT NULL ORDER BY name')
  for (const { name: feed, tracked: text } of rows) {
    const tracked = JSON.parse(text) as TrackedTable
    if (tracked.active === false) continue
    const found = await tableColumns(client, tracked.table)
    if (!found) continue
    await installTruncateTrigger(client, feed, tracked.keyColumn, found.regclass)
  }
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
