import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { pgDatabase, pgServer } from '../helpers/pg.js'
import { collect, failsWith, ok, spawnTidemark, tidemark } from './run-cli.js'

describe('tidemark on a postgres:// source', () => {
  it('track, write, feeds, dump and serve work on a PostgreSQL URL', async () => {
    const url = await pgDatabase()
    const owner = new pg.Client({ connectionString: url })
    await owner.connect()
    await owner.query(`CREATE TABLE customers (id integer PRIMARY KEY, name text); INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bob')`)
    ok(await tidemark(['track', url, '--table', 'customers', '--key', 'id']))
    await owner.query(`UPDATE customers SET name = 'Ada L.' WHERE id = 1`)
    assert.deepEqual(ok(await tidemark(['write', url, 'notes', 'n1', '{"text":"hi"}'])), ['1'])
    const feeds = ok(await tidemark(['feeds', url, '--json'])).join('\n')
    assert.match(feeds, /"customers"/)
    assert.match(feeds, /"notes"/)
    const lines = ok(await tidemark(['dump', url, 'customers'])).map((l) => JSON.parse(l) as { seq: number; key: string; tx: number; data: unknown })
    assert.deepEqual(lines.map((l) => [l.seq, l.key, l.tx]), [[1, '1', 2], [2, '2', 2], [3, '1', 3]])
    assert.deepEqual(lines[2]?.data, { id: 1, name: 'Ada L.' })

    const child = spawnTidemark(['serve', url, '--port', '0'])
    child.stdin?.end()
    const done = collect(child)
    const served = await new Promise<string>((resolve, reject) => {
      let seen = ''
      child.stderr?.on('data', (d: Buffer | string) => {
        seen += String(d)
        const m = /^tidemark serving (.*) at (http:\/\/\S+)$/m.exec(seen)
        if (m) resolve(m[2] as string)
      })
      void done.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)))
    })
    const res = await fetch(`${served}/v1/feeds/customers/changes?after=2`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /"Ada L\."/)
    child.kill('SIGTERM')
    assert.equal((await done).code, 0)
    await owner.end()
  })

  it('a wrong password, user or database: exit 3, a message saying what to check, and no password anywhere', async () => {
    const u = new URL(await pgServer())
    for (const url of [`postgres://nobody:hunter2-secret@${u.host}/postgres`, `postgres://postgres:hunter2-secret@${u.host}/tidemark_nowhere`]) {
      const result = await tidemark(['feeds', url])
      failsWith(result, 3, /check the user and password|create it/)
      assert.doesNotMatch(result.stderr + result.stdout, /hunter2/)
    }
  })
})
