import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import BetterSqlite3 from 'better-sqlite3'
import { tmpDir } from '../helpers/tmp.js'
import { EXIT } from '../../src/errors.js'
import { failsWith, ok, tidemark, tidemarkAll } from './run-cli.js'

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex')

/** A source with one feed, a replica of it (by export and import: no server), and an application's own database. */
async function stores(): Promise<{ source: string; replica: string; app: string }> {
  const dir = tmpDir()
  const source = join(dir, 'shop.db')
  const replica = join(dir, 'orders.db')
  const app = join(dir, 'app.db')
  ok(await tidemark(['write', source, 'customers', '1', '{"name":"Ada"}']))
  ok(await tidemark(['export', source, 'customers', '-o', join(dir, 'c.tidemark')]))
  ok(await tidemark(['import', join(dir, 'c.tidemark'), '--into', replica, '--source', 'http://127.0.0.1:9']))
  const db = new BetterSqlite3(app)
  db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)')
  db.close()
  return { source, replica, app }
}

describe('read commands on the wrong kind of store', () => {
  it('say what the file is, exit non-zero, and write nothing: not a table, not a marks file', async () => {
    const { source, replica, app } = await stores()
    const before = { source: sha(source), replica: sha(replica), app: sha(app) }
    const [feedsReplica, dumpReplica, stateReplica, feedsApp, dumpApp, statusSource, statusApp, verifySource, inspectSource, inspectReplica] =
      await tidemarkAll([
        [['feeds', replica]],
        [['dump', replica, 'customers']],
        [['dump', replica, 'customers', '--state']],
        [['feeds', app]],
        [['dump', app, 'customers', '--state']],
        [['status', source]],
        [['status', app]],
        [['verify', source, '--source', 'http://127.0.0.1:9']],
        [['inspect', source]],
        [['inspect', replica]],
      ])
    for (const r of [feedsReplica, dumpReplica, stateReplica]) failsWith(r!, 3, /orders\.db is a tidemark replica, not a source: see its replicas with `tidemark status /)
    for (const r of [feedsApp, dumpApp]) failsWith(r!, 3, /app\.db is not a tidemark source: it has no tidemark tables/)
    failsWith(statusSource!, 3, /shop\.db is not a tidemark replica: .*it is a source/)
    failsWith(statusApp!, 3, /app\.db is not a tidemark replica/)
    assert.equal(verifySource!.code, 11, verifySource!.stderr)
    assert.match(verifySource!.stderr, /shop\.db is not a tidemark replica/)
    for (const r of [inspectSource, inspectReplica]) failsWith(r!, EXIT.usage, /not a tidemark export file: it is a SQLite database/)
    assert.deepEqual({ source: sha(source), replica: sha(replica), app: sha(app) }, before, 'no file changed')
    for (const f of [replica, app]) assert.ok(!existsSync(`${f}-tidemark.json`), `no marks file beside ${f}`)
    const tables = new BetterSqlite3(app, { readonly: true }).prepare(`SELECT name FROM sqlite_schema WHERE type = 'table'`).pluck().all()
    assert.deepEqual(tables, ['customers'])
  })

  it('read a source without changing it: no retention applied, no schema written', async () => {
    const { source } = await stores()
    // Retention that a maintenance pass would apply: keep 1 change of the 3.
    ok(await tidemark(['write', source, 'customers', '2', '{"name":"Bob"}']))
    ok(await tidemark(['write', source, 'customers', '3', '{"name":"Cy"}']))
    const db = new BetterSqlite3(source)
    db.prepare(`UPDATE tidemark_feeds SET retain_changes = 1 WHERE name = 'customers'`).run()
    db.close()
    ok(await tidemark(['dump', source, 'customers', '--state'])) // folds the log into the state once, as a server would
    const before = sha(source)
    const [feeds, dump, state] = await tidemarkAll([[['feeds', source, '--json']], [['dump', source, 'customers']], [['dump', source, 'customers', '--state']]])
    const listed = JSON.parse(ok(feeds!).join('\n')) as Array<{ name: string; minSeq: number; head: number }>
    assert.deepEqual(listed.map((f) => [f.name, f.minSeq, f.head]), [['customers', 1, 3]], 'no retention applied')
    assert.equal(ok(dump!).length, 3)
    assert.equal(ok(state!).length, 3)
    assert.equal(sha(source), before, 'the source file did not change')
  })

  it('refuses a store written by a newer tidemark with a typed error, changing nothing', async () => {
    const { source, replica } = await stores()
    for (const [file, table] of [[source, 'tidemark_meta'], [replica, 'tidemark_replica_meta']] as const) {
      const db = new BetterSqlite3(file)
      db.prepare(`UPDATE ${table} SET value = '99' WHERE name = 'schema'`).run()
      db.close()
    }
    const before = { source: sha(source), replica: sha(replica) }
    const [feeds, write, status] = await tidemarkAll([[['feeds', source]], [['write', source, 'customers', '9', '{}']], [['status', replica]]])
    for (const r of [feeds, write]) failsWith(r!, 3, /shop\.db has tidemark schema 99, written by a newer tidemark; this one knows up to \d+: upgrade tidemark/)
    failsWith(status!, 3, /orders\.db has tidemark schema 99, written by a newer tidemark/)
    assert.deepEqual({ source: sha(source), replica: sha(replica) }, before)
  })
})
