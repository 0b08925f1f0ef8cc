import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { eventually, get, ndjson, serve, storeWaiters } from './helpers.js'

const writer = fileURLToPath(new URL('./fixtures/write-change.ts', import.meta.url))

async function waiting() {
  const fx = await serve()
  await fx.store.ensureFeed('f')
  await fx.store.write('f', [{ op: 'upsert', key: 'old', data: 0 }])
  const { url } = await fx.server.listen({ port: 0 })
  return { ...fx, url }
}

describe('feed server: long-poll', () => {
  it('returns at once when there is something after `after`', async () => {
    const { url } = await waiting()
    const res = await get(`${url}/v1/feeds/f/changes?after=0&wait=30000`)
    assert.deepEqual(ndjson(res.body).map((l) => l.key ?? l.last), ['old', 1])
  })

  it('answers with just the end line when the wait is over', async () => {
    const { url } = await waiting()
    const res = await get(`${url}/v1/feeds/f/changes?after=1&wait=20`)
    assert.equal(res.status, 200)
    assert.deepEqual({ ...ndjson(res.body)[0], epoch: 'e' }, { end: true, epoch: 'e', head: 1, last: 1 })
  })

  it('is woken by a commit of the same process, every waiter at once', async () => {
    const { url, store } = await waiting()
    const polls = [1, 2, 3].map(() => get(`${url}/v1/feeds/f/changes?after=1&wait=30000`))
    await eventually(() => storeWaiters(store) === 3, 'three long-polls to wait')
    await store.write('f', [{ op: 'upsert', key: 'new', data: { n: 2 } }, { op: 'upsert', key: 'newer', data: { n: 3 } }])
    for (const res of await Promise.all(polls)) {
      assert.equal(res.status, 200)
      assert.equal(res.headers['tidemark-head'], '3')
      const lines = ndjson(res.body)
      assert.deepEqual(lines.map((l) => l.key ?? `end ${l.last}`), ['new', 'newer', 'end 3'])
      assert.deepEqual(lines[0]?.data, { n: 2 })
    }
    assert.equal(storeWaiters(store), 0)
  })

  it('is woken by the owner writing through its own connection', async () => {
    const { url, store, path } = await waiting()
    const poll = get(`${url}/v1/feeds/f/changes?after=1&wait=30000`)
    await eventually(() => storeWaiters(store) === 1, 'the long-poll to wait')
    const db = new Database(path)
    const source = new SqliteSource(db)
    db.transaction(() => source.feed('f').put('owner', { by: 'owner' }))()
    source.close()
    db.close()
    const lines = ndjson((await poll).body)
    assert.deepEqual(lines.map((l) => l.key ?? `end ${l.last}`), ['owner', 'end 2'])
  })

  it('is woken by a commit from another process', async () => {
    const { url, store, path } = await waiting()
    const poll = get(`${url}/v1/feeds/f/changes?after=1&wait=30000`)
    await eventually(() => storeWaiters(store) === 1, 'the long-poll to wait')
    const child = spawn(process.execPath, ['--import', 'tsx', writer, path, 'f', 'remote'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const code = await new Promise((resolve) => child.on('exit', resolve))
    assert.equal(code, 0, stderr)
    const lines = ndjson((await poll).body)
    assert.deepEqual(lines.map((l) => l.key ?? `end ${l.last}`), ['remote', 'end 2'])
    assert.equal((lines[0]?.data as { from: string }).from, 'another process')
  })

  it('works through inject too', async () => {
    const { server, store } = await waiting()
    const poll = server.app.inject({ url: '/v1/feeds/f/changes?after=1&wait=30000' })
    await eventually(() => storeWaiters(store) === 1, 'the long-poll to wait')
    await store.write('f', [{ op: 'delete', key: 'old' }])
    const lines = ndjson((await poll).body)
    assert.deepEqual(lines.map((l) => l.op ?? `end ${l.last}`), ['delete', 'end 2'])
  })
})
