import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { TidemarkError } from '../../src/errors.js'
import { EXPORT_FORMAT, EXPORT_VERSION, TRAILER_BYTES, type ExportHeader } from '../../src/export/export-format.js'
import { writeExport } from '../../src/export/export-writer.js'
import { StoredRow } from '../../src/protocol/encoded.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDir } from '../helpers/tmp.js'
import { EXIT } from '../../src/errors.js'
import { collect, failsWith, ok, spawnTidemark, tidemark, tidemarkAll } from './run-cli.js'

const TOKEN = 'feed-token'
const KEY = 'shared-export-key'

/** An owner with a `customers` feed behind a feed server that wants a token. */
async function owner() {
  const dir = tmpDir()
  const db = join(dir, 'owner.db')
  const store = SqliteSourceStore.open(db)
  await store.ensureFeed('customers')
  const server = await createFeedServer({
    store,
    maintainEveryMs: 0,
    authorize: ({ token }) => {
      if (token !== TOKEN) throw new TidemarkError('unauthorized', 'wrong token')
    },
  })
  const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
  after(async () => {
    await server.close()
    await store.close()
  })
  const write = (from: number, count: number) =>
    store.write('customers', Array.from({ length: count }, (_, i) => ({ op: 'upsert' as const, key: `c${String(from + i).padStart(4, '0')}`, data: { name: `Customer ${from + i}` } })))
  return { dir, db, store, url, write }
}

/** What a replica file holds, read as SQL: its row in the replicas table and its current copy. */
function replicaFile(path: string, name = 'customers') {
  const db = new Database(path, { readonly: true })
  try {
    const r = db.prepare('SELECT epoch, seq, gen, keys, bootstrap FROM tidemark_replica_replicas WHERE name = ?').get(name) as Record<string, unknown> | undefined
    const rows = db.prepare('SELECT key, seq, data FROM tidemark_replica_current WHERE name = ? ORDER BY key').all(name)
    return { replica: r, rows }
  } finally {
    db.close()
  }
}

async function sourceRows(store: SqliteSourceStore) {
  const out: Array<{ key: string; seq: number; data: string }> = []
  let afterKey: string | null = null
  for (;;) {
    const chunk = await store.snapshot('customers', afterKey, 1000)
    for (const r of chunk.rows) out.push({ key: r.key, seq: r.seq, data: JSON.stringify(r.data) })
    if (chunk.done) return out
    afterKey = chunk.last
  }
}

/** An export file made directly (no source): `n` rows at position `position`. */
async function syntheticExport(path: string, n: number, options: { epoch?: string; position?: number } = {}) {
  async function* rows() {
    for (let i = 0; i < n; i += 5000) {
      yield Array.from({ length: Math.min(5000, n - i) }, (_, j) => new StoredRow(`k${String(i + j).padStart(8, '0')}`, i + j + 1, JSON.stringify({ n: i + j, pad: 'x'.repeat(150) })))
    }
  }
  const header: ExportHeader = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    feed: 'customers',
    epoch: options.epoch ?? 'e-synthetic',
    position: options.position ?? n,
    rows: n,
    createdAt: new Date().toISOString(),
    source: 'http://127.0.0.1:9',
    compression: 'br',
    checksum: 'sha256',
    signature: null,
  }
  const parts: Buffer[] = []
  for await (const part of writeExport(header, rows())) parts.push(part)
  writeFileSync(path, Buffer.concat(parts))
}

describe('tidemark export / import / inspect', () => {
  it('exports from a file and from a feed server, imports, and `replicate` catches up from the file’s position', async () => {
    const o = await owner()
    await o.write(0, 50)
    const fromDb = join(o.dir, 'db.tidemark')
    const fromUrl = join(o.dir, 'url.tidemark')
    const [a, b] = await tidemarkAll([
      [['export', o.db, 'customers', '-o', fromDb]],
      [['export', o.url, 'customers', '-o', fromUrl, '--token', TOKEN], { env: { TIDEMARK_EXPORT_KEY: KEY } }],
    ])
    assert.match(ok(a!)[0]!, /^exported 50 rows of feed "customers" at position 50 \(epoch \w+\) to .*db\.tidemark: [\d,]+ bytes, unsigned$/)
    assert.match(ok(b!)[0]!, /^exported 50 rows .* signed$/)
    assert.equal(a!.stderr, '', 'quiet when not on a terminal')
    assert.deepEqual(readdirNoPartials(o.dir), [], 'no partial or scratch file is left behind')

    const [inspected, json] = await tidemarkAll([[['inspect', fromUrl, '--key', KEY]], [['inspect', fromDb, '--json']]])
    const lines = ok(inspected!)
    assert.ok(lines.includes('position  50'), lines.join('\n'))
    assert.ok(lines.some((l) => /^check +ok: 50 rows in key order, checksum matches, signature verified$/.test(l)), lines.join('\n'))
    const header = JSON.parse(json!.stdout) as { feed: string; position: number; source: string; check: { ok: boolean; signature: string } }
    assert.deepEqual([header.feed, header.position, header.check.ok, header.check.signature], ['customers', 50, true, 'unsigned'])
    assert.match(header.source, /^local:.*owner\.db$/)

    const replica = join(o.dir, 'replica.db')
    const imported = ok(await tidemark(['import', fromUrl, '--into', replica, '--key', KEY]))
    assert.match(imported[0]!, new RegExp(`^imported 50 rows of feed "customers" into .* at seq 50 of epoch \\w+ \\(signature verified\\); catch up with: tidemark replicate ${o.url} customers --into `))
    await o.write(50, 10)

    const child = spawnTidemark(['replicate', o.url, 'customers', '--into', replica, '--token', TOKEN])
    const done = collect(child)
    for (let i = 0; i < 200 && (replicaFile(replica).replica?.seq as number) < 60; i++) await delay(50)
    child.kill('SIGTERM')
    const result = await done
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stderr, /bootstrapping/, 'caught up from the file, no bootstrap')
    const file = replicaFile(replica)
    assert.equal(file.replica?.seq, 60)
    assert.deepEqual(file.rows, await sourceRows(o.store))
  })

  it('has --help with examples, and refuses a bad export in one line leaving no file behind', async () => {
    const o = await owner()
    await o.write(0, 3)
    const out = join(o.dir, 'out.tidemark')
    const results = await tidemarkAll([
      [['export', '--help']],
      [['import', '--help']],
      [['inspect', '--help']],
      [['export', o.db, 'nope', '-o', out]],
      [['export', o.url, 'customers', '-o', out, '--token', 'wrong']],
      [['export', o.db, 'customers', '-o', join(o.dir, 'missing', 'out.tidemark')]],
      [['import', join(o.dir, 'absent.tidemark'), '--into', join(o.dir, 'r.db')]],
    ])
    for (const help of results.slice(0, 3)) assert.match(ok(help!).join('\n'), /\nExamples:\n {2}(\S+=\S+ )?tidemark /)
    failsWith(results[3]!, EXIT.unknownFeed, /unknown feed "nope"/)
    failsWith(results[4]!, EXIT.unauthorized, /wrong token/)
    failsWith(results[5]!, EXIT.usage, /no such folder: .*missing/)
    failsWith(results[6]!, EXIT.usage, /absent\.tidemark/)
    assert.deepEqual(readdirNoPartials(o.dir), [])
    assert.equal(existsSync(out), false)
  })

  it('refuses every damaged or unwanted file with one clear line, creating or touching no replica', async () => {
    const o = await owner()
    await o.write(0, 300)
    const good = join(o.dir, 'good.tidemark')
    const signed = join(o.dir, 'signed.tidemark')
    await tidemarkAll([[['export', o.db, 'customers', '-o', good]], [['export', o.db, 'customers', '-o', signed, '--key', KEY]]])
    const bytes = readFileSync(good)
    const headerEnd = bytes.indexOf(0x0a)
    const variant = (name: string, content: Buffer): string => {
      const path = join(o.dir, name)
      writeFileSync(path, content)
      return path
    }
    const flipped = Buffer.from(bytes)
    flipped[Math.floor(bytes.length / 2)]! ^= 0x04
    const cases: Array<[string, string[], RegExp]> = [
      [variant('cut-header', bytes.subarray(0, 20)), [], /ends inside its header, after 20 bytes: it is cut short/],
      [variant('cut-middle', bytes.subarray(0, Math.floor(bytes.length / 2))), [], /cut short/],
      [variant('cut-trailer', bytes.subarray(0, bytes.length - 10)), [], /cut short/],
      [variant('no-trailer', bytes.subarray(0, bytes.length - TRAILER_BYTES)), [], /cut short/],
      [variant('flipped', flipped), [], /the file is damaged/],
      [variant('version', Buffer.concat([Buffer.from(bytes.subarray(0, headerEnd).toString().replace('"version":1', '"version":2')), bytes.subarray(headerEnd)])), [], /format version 2; this tidemark reads version 1: upgrade tidemark/],
      [variant('not-export.csv', Buffer.from('id,name\n1,Ada\n')), [], /not a tidemark export file/],
      [signed, ['--key', 'wrong'], /signature does not match: the file was altered after it was signed, or signed with another key/],
      [good, ['--key', KEY], /not signed, and a signature is demanded/],
      // An empty key (a variable that is not set) is an error, not "no key": the signature would go unchecked.
      [signed, ['--key', ''], /--key is empty: give the shared signing key/],
      [signed, ['--key', '  '], /--key is empty/],
      [good, ['--feed', 'orders'], /holds feed "customers", not "orders"/],
    ]
    // One replica file that holds a copy (it must stay as it is), and one that must never be created.
    const held = join(o.dir, 'held.db')
    ok(await tidemark(['import', good, '--into', held, '--source', o.url]))
    const before = replicaFile(held)
    const runs = cases.flatMap(([file, extra]) => [
      [['import', file, '--into', join(o.dir, 'never.db'), '--source', o.url, ...extra]] as [string[]],
      [['import', file, '--into', held, '--source', o.url, '--force', ...extra]] as [string[]],
    ])
    const results = await tidemarkAll(runs)
    cases.forEach(([file, extra, message], i) => {
      for (const r of [results[2 * i]!, results[2 * i + 1]!]) {
        try {
          failsWith(r, EXIT.usage, message)
        } catch (error) {
          throw new Error(`${file} ${extra.join(' ')}: ${(error as Error).message}`)
        }
      }
    })
    assert.equal(existsSync(join(o.dir, 'never.db')), false, 'a refused file creates no replica file')
    assert.deepEqual(replicaFile(held), before)
    // inspect says the same, and exits 1.
    failsWith(await tidemark(['inspect', join(o.dir, 'flipped')]), EXIT.usage, /the file is damaged/)
    const emptyEnv = { env: { TIDEMARK_EXPORT_KEY: '' } }
    failsWith(await tidemark(['import', signed, '--into', join(o.dir, 'never.db'), '--source', o.url], emptyEnv), EXIT.usage, /TIDEMARK_EXPORT_KEY is empty/)
    failsWith(await tidemark(['inspect', signed], emptyEnv), EXIT.usage, /TIDEMARK_EXPORT_KEY is empty/)
    failsWith(await tidemark(['export', o.db, 'customers', '-o', join(o.dir, 'never.tidemark')], emptyEnv), EXIT.usage, /TIDEMARK_EXPORT_KEY is empty/)
    assert.equal(existsSync(join(o.dir, 'never.db')), false)
  })

  it('refuses to import over a replica that holds a copy unless --force, which replaces it', async () => {
    const o = await owner()
    await o.write(0, 5)
    const first = join(o.dir, 'first.tidemark')
    await tidemark(['export', o.db, 'customers', '-o', first])
    await o.write(5, 5)
    const second = join(o.dir, 'second.tidemark')
    await tidemark(['export', o.db, 'customers', '-o', second])
    const replica = join(o.dir, 'replica.db')
    ok(await tidemark(['import', first, '--into', replica, '--source', o.url]))
    const before = replicaFile(replica)
    failsWith(await tidemark(['import', second, '--into', replica, '--source', o.url]), EXIT.conflict, /already holds a copy \(5 keys at seq 5 of epoch \w+\): importing would replace it; pass --force/)
    assert.deepEqual(replicaFile(replica), before)
    ok(await tidemark(['import', second, '--into', replica, '--source', o.url, '--force']))
    assert.equal(replicaFile(replica).replica?.seq, 10)
    assert.deepEqual(replicaFile(replica).rows, await sourceRows(o.store))
  })

  it('leaves the replica as it was when the import is killed mid-write; a new import starts over', async () => {
    const { replica, big, before } = await seededReplica()
    const child = spawnTidemark(['import', big, '--into', replica, '--force'])
    const done = collect(child)
    await writingRows(replica)
    child.kill('SIGKILL')
    const killed = await done
    assert.equal(killed.signal, 'SIGKILL', 'killed before it finished')
    const after = replicaFile(replica)
    assert.deepEqual([after.replica?.epoch, after.replica?.seq, after.replica?.gen, after.replica?.keys, after.rows], [before.replica?.epoch, before.replica?.seq, before.replica?.gen, before.replica?.keys, before.rows])

    const again = ok(await tidemark(['import', big, '--into', replica, '--force']))
    assert.match(again[0]!, /^imported 150,000 rows/)
    const final = replicaFile(replica)
    assert.deepEqual([final.replica?.epoch, final.replica?.seq, final.replica?.bootstrap, final.rows.length], ['e-new', 150_000, null, 150_000])
  })

  it('stops on Ctrl-C mid-write with exit 130, cancelling the unfinished copy: the replica is exactly as it was', async () => {
    const { replica, big, before } = await seededReplica()
    const child = spawnTidemark(['import', big, '--into', replica, '--force'])
    const done = collect(child)
    await writingRows(replica)
    child.kill('SIGINT')
    const result = await done
    assert.equal(result.code, 130, result.stderr)
    assert.match(result.stderr, /^tidemark: stopped by SIGINT: nothing imported \(.*replica\.db is as it was\)\n$/)
    assert.deepEqual(replicaFile(replica), before, 'copy, checkpoint and no bootstrap left behind')
  })
})

/** A replica holding a small copy, and a file big enough that importing it takes a while. */
async function seededReplica() {
    const dir = tmpDir()
    const small = join(dir, 'small.tidemark')
    const big = join(dir, 'big.tidemark')
    await syntheticExport(small, 3, { epoch: 'e-old' })
    await syntheticExport(big, 150_000, { epoch: 'e-new' })
    const replica = join(dir, 'replica.db')
    ok(await tidemark(['import', small, '--into', replica]))
    const before = replicaFile(replica)
  return { replica, big, before }
}

/** Resolves once an import into `replica` has written rows into its unfinished copy. */
async function writingRows(replica: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    await delay(20)
    const db = new Database(replica, { readonly: true })
    const r = db.prepare('SELECT bootstrap_keys FROM tidemark_replica_replicas WHERE name = ?').get('customers') as { bootstrap_keys: number }
    db.close()
    if (r.bootstrap_keys > 0) return
  }
  assert.fail('the import did not begin writing rows')
}

function readdirNoPartials(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('.partial') || f.includes('scratch'))
}
