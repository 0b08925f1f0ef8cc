import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { it } from 'node:test'
import type { Change } from '../../src/protocol/types.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDb } from '../helpers/tmp.js'

async function runChild(args: string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/writer-child.ts', ...args], { stdio: ['ignore', 'inherit', 'inherit'] })
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, `writer ${args.join(' ')} exited with ${code}`)
}

async function changesOf(store: SqliteSourceStore, feed: string): Promise<Change[]> {
  const out: Change[] = []
  for await (const batch of store.changes(feed, 0)) out.push(...batch)
  return out
}

it('writer processes on one SQLite file never produce a gap or a duplicate seq, and keep their transactions whole', async () => {
  const path = tmpDb()
  const setup = new Database(path)
  setup.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT)')
  setup.close()
  const store = SqliteSourceStore.open(path)
  await store.ensureFeed('shared')
  await store.track({ table: 'items', keyColumn: 'id' })

  // Read while they write: every read must see a gap-free prefix.
  let reading = true
  const reader = (async () => {
    let after = 0
    while (reading) {
      for await (const batch of store.changes('shared', after)) {
        for (const c of batch) {
          assert.equal(c.seq, after + 1, 'a reader saw a gap')
          after = c.seq
        }
      }
      await store.waitForChanges('shared', after, { timeoutMs: 50 })
    }
  })()
  await Promise.all([
    runChild([path, 'a', '150', '5', 'api']),
    runChild([path, 'b', '150', '3', 'api']),
    runChild([path, '1', '150', '2', 'table']),
    runChild([path, '2', '150', '2', 'table']),
  ])
  reading = false
  await reader

  const shared = await changesOf(store, 'shared')
  assert.equal(shared.length, 150 * 5 + 150 * 3)
  assert.deepEqual(shared.map((c) => c.seq), Array.from({ length: shared.length }, (_, i) => i + 1))
  // Each source transaction is one contiguous group of one writer's rows.
  const groups = new Map<number, string[]>()
  for (const c of shared) groups.set(c.tx, [...(groups.get(c.tx) ?? []), c.key])
  for (const keys of groups.values()) {
    const [writer, t] = (keys[0] as string).split('-')
    assert.equal(keys.length, writer === 'a' ? 5 : 3)
    assert.ok(keys.every((k) => k.startsWith(`${writer}-${t}-`)))
  }
  const items = await changesOf(store, 'items')
  assert.equal(items.length, 150 * 2 * 2)
  assert.deepEqual(items.map((c) => c.seq), Array.from({ length: items.length }, (_, i) => i + 1))
  assert.equal(new Set(items.map((c) => c.key)).size, items.length)
  await store.close()
})
