import assert from 'node:assert/strict'
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { tmpDir } from '../helpers/tmp.js'
import { EXIT } from '../../src/errors.js'
import { failsWith, ok, tidemark, tidemarkAll } from './run-cli.js'

const COMMANDS = ['serve', 'write', 'dump', 'feeds', 'track', 'untrack', 'reset-epoch', 'retention', 'replicate', 'status', 'verify', 'repair', 'export', 'import', 'inspect']

describe('tidemark help, usage and store errors', () => {
  it('has --help with examples for the program and every command, and --version', async () => {
    const results = await tidemarkAll([[['--help']], [['--version']], ...COMMANDS.map((c): [string[]] => [[c, '--help']])])
    const [help, version, ...commands] = results
    for (const c of COMMANDS) assert.match(ok(help!).join('\n'), new RegExp(`^  ${c} `, 'm'))
    assert.match(help!.stdout, /Examples:\n {2}tidemark /)
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    assert.deepEqual(ok(version!), [pkg.version])
    commands.forEach((result, i) => {
      const text = ok(result).join('\n')
      assert.match(text, new RegExp(`^Usage: tidemark ${COMMANDS[i]} `), text)
      assert.match(text, /\nExamples:\n {2}(\S+=\S+ )?tidemark /, `${COMMANDS[i]} --help has no examples`)
    })
  })

  it(`reports usage errors on one line with exit ${EXIT.usage}`, async () => {
    const db = join(tmpDir(), 'shop.db')
    const [unknown, missing, option, excess] = await tidemarkAll([
      [['dumpp', db]],
      [['dump', db]],
      [['dump', db, 'customers', '--bogus']],
      [['reset-epoch', db, 'customers', 'extra']],
    ])
    failsWith(unknown!, EXIT.usage, /^tidemark: unknown command 'dumpp' \(Did you mean dump\?\)\n$/)
    failsWith(missing!, EXIT.usage, /^tidemark: missing required argument 'feed'\n$/)
    failsWith(option!, EXIT.usage, /^tidemark: unknown option '--bogus'\n$/)
    failsWith(excess!, EXIT.usage, /^tidemark: too many arguments for 'reset-epoch'/)
  })

  it('reports a missing file and a file that is not SQLite with exit 3, the stack only with --verbose', async () => {
    const dir = tmpDir()
    const missing = join(dir, 'missing.db')
    const junk = join(dir, 'junk.db')
    writeFileSync(junk, randomBytes(8192))
    const results = await tidemarkAll([
      [['dump', missing, 'customers']],
      [['feeds', missing]],
      [['track', missing, '--table', 't', '--key', 'id']],
      [['dump', junk, 'customers']],
      [['write', junk, 'customers', '1', '{}']],
      [['feeds', junk, '--verbose']],
    ])
    const [dumpMissing, feedsMissing, trackMissing, dumpJunk, writeJunk, verbose] = results
    for (const r of [dumpMissing, feedsMissing, trackMissing]) failsWith(r!, 3, /^tidemark: no such database file: .*missing\.db\n$/)
    failsWith(dumpJunk!, 3, /junk\.db is not a SQLite database/)
    failsWith(writeJunk!, 3, /junk\.db is not a SQLite database/)
    assert.deepEqual(readFileSync(junk).length, 8192, 'the junk file was left alone')
    // --verbose adds the stack traces, the cause's too.
    assert.equal(verbose!.code, 3)
    assert.match(verbose!.stderr, /^tidemark: .*junk\.db is not a SQLite database/)
    assert.match(verbose!.stderr, /\n\s+at /)
    assert.match(verbose!.stderr, /caused by: SqliteError/)
  })

  it('reports a read-only database file with exit 3', async () => {
    // chmod 0444 does not stop root (it bypasses file permissions), and the tests often run as
    // root: then the CLI runs as the unprivileged user "nobody" (65534), for whom the mode holds.
    const dir = tmpDir()
    chmodSync(dir, 0o755)
    const db = join(dir, 'source.db')
    ok(await tidemark(['write', db, 'customers', '1', '{"name":"Ada"}']))
    const readOnly = join(dir, 'read-only.db')
    copyFileSync(db, readOnly)
    chmodSync(readOnly, 0o444)
    const as = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}
    const [write, dump] = await tidemarkAll([
      [['write', readOnly, 'customers', '2', '{}'], as],
      [['dump', readOnly, 'customers'], as],
    ])
    failsWith(write!, 3, /read-only\.db is read-only: tidemark needs to write its tables there \(check the file's permissions\)/)
    // Reading opens it read-only, but a WAL file's readers need the -shm file beside it.
    failsWith(dump!, 3, /cannot read .*read-only\.db: it is in WAL mode and its folder is read-only/)
  })

  it('reports a database in a folder that cannot be created', async () => {
    const dir = tmpDir()
    const file = join(dir, 'file')
    writeFileSync(file, '')
    // A path under a regular file cannot be created, even by root.
    failsWith(await tidemark(['write', join(file, 'x.db'), 'customers', '1', '{}']), 3, /cannot open .*file\/x\.db/)
  })
})
