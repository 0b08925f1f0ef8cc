import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { FeedInfo } from '../../src/protocol/types.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { tmpDir } from '../helpers/tmp.js'
import { EXIT } from '../../src/errors.js'
import { failsWith, ok, tidemark, tidemarkAll } from './run-cli.js'

/** An owner's database with a table to capture, one with a BLOB column, and a table without tidemark. */
function ownerDb(): string {
  const path = join(tmpDir(), 'owner.db')
  const db = new Database(path)
  db.exec(`
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
    INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bob'), (3, 'Cy');
    CREATE TABLE pictures (id INTEGER PRIMARY KEY, image BLOB);`)
  db.close()
  return path
}

describe('tidemark feeds, track, untrack, reset-epoch, retention', () => {
  it('tracks a table, lists feeds, changes retention and epoch, untracks', async () => {
    const db = ownerDb()
    const [tracked] = ok(await tidemark(['track', db, '--table', 'customers', '--key', 'id', '--feed', 'people', '--retain-age', '7d']))
    assert.match(tracked!, /feed "people" now captures table "customers" \(key id; columns id, name\): 3 existing rows captured, head 3/)
    assert.match(tracked!, /keeps at least the changes of the last 7d/)

    // Writes by any client land in the feed.
    const owner = new Database(db)
    owner.exec(`UPDATE customers SET name = 'Bea' WHERE id = 2; DELETE FROM customers WHERE id = 3`)
    owner.close()
    ok(await tidemark(['write', db, 'orders', 'o1', '{"total":5}']))

    const [table, json, dumped] = await tidemarkAll([[['feeds', db]], [['feeds', db, '--json']], [['dump', db, 'people', '--after', '3']]])
    const lines = ok(table!)
    assert.match(lines[0]!, /^NAME\s+EPOCH\s+HEAD\s+MIN-SEQ\s+KEYS\s+DIGEST-SEQ\s+RETENTION\s+TRACKED$/)
    assert.match(lines[1]!, /^orders\s+[0-9a-f]{16}\s+1\s+1\s+1\s+1\s+all\s+-$/)
    assert.match(lines[2]!, /^people\s+[0-9a-f]{16}\s+5\s+1\s+2\s+5\s+7d\s+customers\.id$/)
    // Columns line up: every row is as wide as the header up to the last column.
    assert.equal(lines[1]!.indexOf('all'), lines[0]!.indexOf('RETENTION'))
    const feeds = JSON.parse(json!.stdout) as FeedInfo[]
    const people = feeds.find((f) => f.name === 'people')
    assert.deepEqual(
      { head: people?.head, keys: people?.keys, digestSeq: people?.digestSeq, retention: people?.retention, tracked: people?.tracked },
      { head: 5, keys: 2, digestSeq: 5, retention: { ageMs: 7 * 86_400_000 }, tracked: { table: 'customers', keyColumn: 'id', columns: ['id', 'name'], active: true } },
    )
    assert.deepEqual(
      ok(dumped!).map((l) => JSON.parse(l) as { key: string; op: string }).map((c) => [c.key, c.op]),
      [['2', 'upsert'], ['3', 'delete']],
    )

    // Re-tracking re-installs the capture and captures nothing twice.
    assert.match(ok(await tidemark(['track', db, '--table', 'customers', '--key', 'id', '--feed', 'people']))[0]!, /already captured/)

    const [show, set, keep] = [
      await tidemark(['retention', db, 'people']),
      await tidemark(['retention', db, 'people', '--changes', '1000']),
      await tidemark(['retention', db, 'orders', '--clear', '--age', '36h']),
    ]
    assert.deepEqual(ok(show), ['feed "people" keeps at least the changes of the last 7d'])
    // A limit not given is kept.
    assert.deepEqual(ok(set), [
      'feed "people" now keeps at least the newest 1000 changes and those of the last 7d (before: at least the changes of the last 7d)',
    ])
    assert.deepEqual(ok(keep), ['feed "orders" now keeps at least the changes of the last 36h (before: the whole log)'])

    const epochBefore = people?.epoch
    const [reset] = ok(await tidemark(['reset-epoch', db, 'people']))
    const m = /^feed "people": epoch ([0-9a-f]+) -> ([0-9a-f]+) \(replicas will re-bootstrap\)$/.exec(reset!)
    assert.ok(m, reset)
    assert.equal(m[1], epochBefore)
    assert.notEqual(m[2], epochBefore)

    assert.deepEqual(ok(await tidemark(['untrack', db, 'people'])), [
      'feed "people" no longer captures table "customers": later writes to the table are not in the feed',
    ])
    const after = JSON.parse((await tidemark(['feeds', db, '--json'])).stdout) as FeedInfo[]
    assert.equal(after.find((f) => f.name === 'people')?.tracked?.active, false)
    assert.equal(after.find((f) => f.name === 'people')?.epoch, m[2])
  })

  it('refuses to track what it cannot capture, and unknown feeds', async () => {
    const db = ownerDb()
    ok(await tidemark(['write', db, 'orders', 'o1', '1']))
    const results = await tidemarkAll([
      [['track', db, '--table', 'customers', '--key', 'customer_id']],
      [['track', db, '--table', 'nope', '--key', 'id']],
      [['track', db, '--table', 'pictures', '--key', 'id']],
      // A feed written through the API cannot also capture a table.
      [['track', db, '--table', 'customers', '--key', 'id', '--feed', 'orders']],
      [['track', db, '--table', 'customers']],
      [['track', db, '--table', 'customers', '--key', 'id', '--retain-age', 'soon']],
      [['untrack', db, 'orders']],
      [['untrack', db, 'nope']],
      [['reset-epoch', db, 'nope']],
      [['retention', db, 'nope', '--changes', '5']],
      [['retention', db, 'orders', '--changes', '0']],
    ])
    const [noColumn, noTable, blob, apiFeed, noKey, badAge, notTracked, untrackUnknown, resetUnknown, retentionUnknown, zero] = results
    failsWith(noColumn!, EXIT.usage, /table "customers" has no column "customer_id" \(it has id, name\)/)
    failsWith(noTable!, EXIT.usage, /no table "nope" in this database/)
    failsWith(blob!, EXIT.usage, /cannot capture BLOB columns as JSON: image of table "pictures"/)
    failsWith(apiFeed!, EXIT.conflict, /feed "orders" already has 1 changes written through the API/)
    failsWith(noKey!, EXIT.usage, /required option '--key <column>' not specified/)
    failsWith(badAge!, EXIT.usage, /option '--retain-age <duration>' argument 'soon' is invalid\. Invalid duration "soon"/)
    failsWith(notTracked!, EXIT.usage, /feed "orders" does not capture a table/)
    failsWith(untrackUnknown!, EXIT.unknownFeed, /unknown feed "nope"/)
    failsWith(resetUnknown!, EXIT.unknownFeed, /unknown feed "nope"/)
    failsWith(retentionUnknown!, EXIT.unknownFeed, /unknown feed "nope"/)
    failsWith(zero!, EXIT.usage, /argument '0' is invalid\. Expected a whole number ≥ 1/)
    // Nothing was captured by the failed attempts.
    assert.deepEqual((JSON.parse((await tidemark(['feeds', db, '--json'])).stdout) as FeedInfo[]).map((f) => f.name), ['orders'])
  })

  it('says so when there are no feeds', async () => {
    const db = ownerDb()
    // An owner's database that tidemark has not touched yet is not a source: said, and left alone.
    failsWith(await tidemark(['feeds', db]), 3, /owner\.db is not a tidemark source: it has no tidemark tables/)
    // With tidemark's tables and no feed yet:
    const owner = new Database(db)
    new SqliteSource(owner).close()
    owner.close()
    assert.deepEqual(ok(await tidemark(['feeds', db])), ['no feeds yet: create one with `tidemark write` or `tidemark track`'])
  })
})
