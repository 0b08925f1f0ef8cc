/**
 * A replica against a feed server that breaks the protocol on purpose: a change line that never
 * ends, a snapshot read below the head the replica read before it. Whatever it sends, the replica
 * keeps its memory bounded, applies nothing wrong, says what is wrong and retries with backoff.
 * The server is scripted (node:http), since a real one cannot be made to do this.
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { after, describe, it } from 'node:test'
import { LIMITS } from '../../src/protocol/limits.js'
import { createReplica } from '../../src/replica/replica.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { Logger } from '../../src/store/store.js'
import { Backoff } from '../../src/transport/backoff.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { until } from '../fixtures/replica-e2e.js'
import { tmpDb } from '../helpers/tmp.js'
import { changeLine, fakeServer, v1Head } from '../transport/helpers.js'

const EPOCH = '00000000000000e1'

function feedInfo(res: ServerResponse, head: number): void {
  v1Head(res, 200, 'json')
  res.end(JSON.stringify({ name: 'f', epoch: EPOCH, head, minSeq: 1, keys: head, digestSeq: head, retention: {} }))
}

function snapshot(res: ServerResponse, head: number, keys: number): void {
  v1Head(res, 200, 'ndjson', EPOCH)
  let body = ''
  for (let i = 1; i <= keys; i++) body += `{"key":"k${String(i).padStart(2, '0')}","seq":${i},"data":${i}}\n`
  body += `${JSON.stringify({ end: true, epoch: EPOCH, head, last: keys === 0 ? null : `k${String(keys).padStart(2, '0')}`, done: true, rows: keys })}\n`
  res.end(body)
}

async function replicaOf(url: string) {
  const warns: string[] = []
  const logger: Logger = { debug() {}, info() {}, warn: (_o, msg) => warns.push(String(msg)), error: (_o, msg) => warns.push(String(msg)) }
  const source = new HttpFeedSource(url, { timeoutMs: 5000 })
  const path = tmpDb()
  const store = SqliteReplicaStore.open(path)
  const replica = createReplica({
    source,
    feed: 'f',
    store,
    logger,
    transport: new LongPollTransport(source, { waitMs: 200 }),
    backoff: new Backoff({ baseMs: 10, capMs: 50 }),
  })
  const running = replica.run()
  running.catch(() => {})
  after(async () => {
    await replica.stop()
    await store.close()
    await source.close()
  })
  return { replica, store, warns }
}

describe('replica against a hostile feed server', () => {
  it('refuses a change line that never ends, keeps nothing of it and retries with backoff', async () => {
    let written = 0
    const server = await fakeServer((req, res) => {
      const url = req.url ?? ''
      if (url.startsWith('/v1/feeds/f/snapshot')) return snapshot(res, 0, 0)
      if (url.startsWith('/v1/feeds/f/changes')) {
        v1Head(res, 200, 'ndjson', EPOCH)
        // Change 1 is fine; change 2's line goes on for 50 MB.
        res.write(`${changeLine(1)}\n{"seq":2,"key":"k2","op":"upsert","data":"`)
        const chunk = Buffer.alloc(1024 * 1024, 'a')
        let closed = false
        res.on('close', () => (closed = true))
        void (async () => {
          for (let i = 0; i < 50 && !closed; i++) {
            written += chunk.length
            if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve))
          }
          res.end()
        })()
        return
      }
      feedInfo(res, 0)
    })
    const { replica, store, warns } = await replicaOf(server.url)
    await until(() => warns.filter((w) => w.includes(`over ${LIMITS.lineBytes} bytes`)).length >= 3, 'three refusals, each retried')
    const status = replica.status()
    assert.equal(status.checkpoint, 0, 'not even change 1 of the spoiled page is applied')
    assert.match(status.lastError ?? '', /line 2 of the response is over \d+ bytes, longer than the protocol allows/)
    assert.deepEqual(await store.rows('f', null, 10), [])
    // Each attempt was cut off well before the 50 MB: what was sent in all is a few MB per try.
    const tries = warns.filter((w) => w.includes('longer than the protocol allows')).length
    assert.ok(written < tries * 20 * 1024 * 1024, `${written} bytes were sent in ${tries} tries`)
  })

  it('refuses a snapshot read below the head it read before, and does not go live on it', async () => {
    let snapshots = 0
    let honest = false
    const server = await fakeServer((req, res) => {
      const url = req.url ?? ''
      if (url.startsWith('/v1/feeds/f/snapshot')) {
        snapshots++
        // Read at head 26 (keys k01–k26) although the feed's head was 31 before: k27–k31 would be lost.
        return honest ? snapshot(res, 31, 31) : snapshot(res, 26, 26)
      }
      if (url.startsWith('/v1/feeds/f/changes')) {
        v1Head(res, 200, 'ndjson', EPOCH)
        res.end(`${JSON.stringify({ end: true, epoch: EPOCH, head: 31, last: 31 })}\n`)
        return
      }
      feedInfo(res, 31)
    })
    const { replica, store, warns } = await replicaOf(server.url)
    await until(() => snapshots >= 3, 'the chunk asked for again, with backoff')
    assert.equal(replica.status().phase, 'bootstrapping')
    assert.match(replica.status().lastError ?? '', /was read at head 26, below head 31 read before it: the source broke the protocol/)
    assert.ok(warns.some((w) => /nothing of the chunk was kept, asking again/.test(w)))
    assert.equal((await store.state('f'))?.bootstrap?.snapshotDone ?? false, false)
    // Once the server answers as the protocol says, the replica goes live with every key.
    honest = true
    await until(() => replica.status().phase === 'live' || undefined, 'live')
    assert.equal(replica.status().checkpoint, 31)
    assert.equal((await store.rows('f', null, 100)).length, 31)
  })
})
