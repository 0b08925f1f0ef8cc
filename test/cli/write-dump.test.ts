import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { tmpDir } from '../helpers/tmp.js'
import { EXIT } from '../../src/errors.js'
import { CLI, failsWith, ok, ROOT, tidemark, tidemarkAll } from './run-cli.js'

describe('tidemark write and dump', () => {
  it('writes puts, deletes and stdin transactions, and dumps changes and state', async () => {
    const db = join(tmpDir(), 'shop.db')
    // write creates the file and the feed.
    assert.deepEqual(ok(await tidemark(['write', db, 'customers', '1', '{"name":"Ada"}'])), ['1'])
    assert.ok(existsSync(db))
    assert.deepEqual(ok(await tidemark(['write', db, 'customers', '2', '"Bob"'])), ['2'])
    assert.deepEqual(ok(await tidemark(['write', db, 'customers', '1', '--delete'])), ['3'])
    const ndjson = ['{"key":"3","data":{"n":3}}', '', '{"key":"4","data":[4]}', '{"key":"2","delete":true}'].join('\n')
    assert.deepEqual(ok(await tidemark(['write', db, 'customers', '--stdin'], { input: ndjson })), ['4', '5', '6'])

    const [changes, after, limited, state, stateAfter, stateLimited] = await tidemarkAll([
      [['dump', db, 'customers']],
      [['dump', db, 'customers', '--after', '3']],
      [['dump', db, 'customers', '--limit', '1']],
      [['dump', db, 'customers', '--state']],
      [['dump', db, 'customers', '--state', '--after', '3']],
      [['dump', db, 'customers', '--state', '--limit', '1']],
    ])
    const parsed = ok(changes!).map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(
      parsed.map((c) => [c.seq, c.key, c.op, c.data, c.tx]),
      [
        [1, '1', 'upsert', { name: 'Ada' }, 1],
        [2, '2', 'upsert', 'Bob', 2],
        [3, '1', 'delete', undefined, 3],
        // The stdin lines are one source transaction: tx is the seq of its last change.
        [4, '3', 'upsert', { n: 3 }, 6],
        [5, '4', 'upsert', [4], 6],
        [6, '2', 'delete', undefined, 6],
      ],
    )
    assert.equal(typeof parsed[0]?.ts, 'number')
    assert.deepEqual(ok(after!).map((l) => (JSON.parse(l) as { seq: number }).seq), [4, 5, 6])
    assert.deepEqual(ok(limited!).map((l) => (JSON.parse(l) as { seq: number }).seq), [1])
    assert.deepEqual(ok(state!).map((l) => JSON.parse(l)), [
      { key: '3', seq: 4, data: { n: 3 } },
      { key: '4', seq: 5, data: [4] },
    ])
    assert.deepEqual(ok(stateAfter!).map((l) => (JSON.parse(l) as { key: string }).key), ['4'])
    assert.deepEqual(ok(stateLimited!).map((l) => (JSON.parse(l) as { key: string }).key), ['3'])
  })

  it(`refuses bad data (exit ${EXIT.usage}) and unknown feeds (exit ${EXIT.unknownFeed}) with one line, writing nothing`, async () => {
    const db = join(tmpDir(), 'shop.db')
    ok(await tidemark(['write', db, 'customers', '1', '{"name":"Ada"}']))
    const [notJson, noData, stdinBad, stdinShape, unknownFeed, badFeed, badAfter, deleteWithData] = await tidemarkAll([
      [['write', db, 'customers', '2', 'Ada']],
      [['write', db, 'customers', '2']],
      [['write', db, 'customers', '--stdin'], { input: '{"key":"2","data":1}\n{"key":"3","data":\n' }],
      [['write', db, 'customers', '--stdin'], { input: '{"key":"2","data":1}\n{"key":3,"data":1}\n' }],
      [['dump', db, 'nope']],
      [['dump', db, 'bad name']],
      [['dump', db, 'customers', '--after', 'x']],
      [['write', db, 'customers', '2', '{}', '--delete']],
    ])
    failsWith(notJson!, EXIT.usage, /the data of key "2" is not valid JSON.*a string must be quoted/)
    failsWith(noData!, EXIT.usage, /give the data of key "2" as a JSON argument, or --delete/)
    failsWith(stdinBad!, EXIT.usage, /stdin line 2 is not valid JSON/)
    failsWith(stdinShape!, EXIT.usage, /stdin line 2: "key" must be a string/)
    failsWith(unknownFeed!, EXIT.unknownFeed, /unknown feed "nope"/)
    failsWith(badFeed!, EXIT.usage, /invalid feed name "bad name"/)
    failsWith(badAfter!, EXIT.usage, /--after must be a seq/)
    failsWith(deleteWithData!, EXIT.usage, /--delete takes no data/)
    // A bad stdin line means none of its transaction is written.
    assert.deepEqual(ok(await tidemark(['dump', db, 'customers'])).length, 1)
  })

  it('stops quietly when the reader closes the pipe early (dump | head -1)', async () => {
    const db = join(tmpDir(), 'shop.db')
    const pad = 'x'.repeat(500)
    const lines = Array.from({ length: 4000 }, (_, i) => JSON.stringify({ key: `k${i}`, data: { i, pad } })).join('\n')
    ok(await tidemark(['write', db, 'big', '--stdin'], { input: lines }))
    const cli = ['node', ...CLI].join(' ')
    for (const extra of ['', '--state']) {
      // 2 MB of output against a 64 KB pipe: the CLI is still writing when head exits.
      const run = spawnSync('bash', ['-c', `${cli} dump "$1" big ${extra} | head -1; echo "exit=\${PIPESTATUS[0]}"`, 'bash', db], {
        cwd: ROOT,
        encoding: 'utf8',
      })
      const [first, exit] = run.stdout.trim().split('\n')
      assert.equal((JSON.parse(first as string) as { key: string }).key, 'k0')
      assert.equal(exit, 'exit=0')
      assert.equal(run.stderr, '', `dump ${extra} printed: ${run.stderr}`)
    }
  })
})
