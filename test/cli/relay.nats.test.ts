import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { createFeedServer } from '../../src/server/feed-server.js'
import { readReplicas } from '../../src/store/sqlite/replica-report.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { streamName } from '../../src/transport/nats/nats-settings.js'
import { natsUrl, uniqueName } from '../helpers/brokers.js'
import { tmpDir } from '../helpers/tmp.js'
import { collect, failsWith, spawnTidemark, tidemark } from './run-cli.js'
import { EXIT } from '../../src/errors.js'

const nats = await natsUrl()

/** A source file with one feed of a unique name (its stream is named after it), and a NATS admin connection. */
async function natsFeed() {
  const feed = uniqueName('cli')
  const dir = tmpDir()
  const db = join(dir, 'owner.db')
  const store = SqliteSourceStore.open(db)
  await store.ensureFeed(feed)
  const nc = await connect({ servers: nats, timeout: 2000 })
  const jsm = await jetstreamManager(nc)
  after(async () => {
    await jsm.streams.delete(streamName(feed)).catch(() => {})
    await nc.close()
    await store.close()
  })
  return {
    feed,
    dir,
    db,
    store,
    jsm,
    /** The relay publishes from the head it finds: write once its stream is there. */
    async streamUp(): Promise<void> {
      for (let t = 0; !(await jsm.streams.info(streamName(feed)).then(() => true, () => false)); t++) {
        assert.ok(t < 300, 'the relay made its stream')
        await delay(100)
      }
    },
    /** The Tidemark-Last of the epoch's last message in the stream (0 when none). */
    async streamLast(): Promise<number> {
      const subject = `tidemark.${feed}.${(await store.getFeed(feed)).epoch}`
      const m = await jsm.streams.getMessage(streamName(feed), { last_by_subj: subject }).catch(() => null)
      return Number(m?.header.get('Tidemark-Last') ?? 0)
    },
  }
}

describe('tidemark relay / replicate --nats', () => {
  it('refuses to run without exactly one broker', async () => {
    failsWith(await tidemark(['relay', 'x.db']), EXIT.usage, /give one broker/)
    failsWith(await tidemark(['relay', 'x.db', '--nats', nats, '--amqp', 'amqp://127.0.0.1']), EXIT.usage, /give one broker/)
  })

  it('a relay process and a replicate process keep a replica in sync through JetStream', async () => {
    const { feed, dir, db, store, jsm, streamUp } = await natsFeed()
    const server = await createFeedServer({ store, maintainEveryMs: 0 })
    const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
    after(() => server.close())
    const relay = spawnTidemark(['relay', db, '--nats', nats, '--feed', feed])
    const relayed = collect(relay)
    const into = join(dir, 'replica.db')
    const replicate = spawnTidemark(['replicate', url, feed, '--into', into, '--nats', nats])
    const replicated = collect(replicate)
    await streamUp()
    for (let i = 0; i < 50; i++) await store.write(feed, [{ op: 'upsert', key: `k${i % 7}`, data: { i } }])
    const head = (await store.getFeed(feed)).head
    const end = Date.now() + 30_000
    for (;;) {
      const [report] = await readReplicas(into).catch(() => [])
      if (report && report.checkpoint === head) break
      assert.ok(Date.now() < end, `the replica reached ${report?.checkpoint ?? 'nothing'}, not ${head}`)
      await delay(100)
    }
    const info = await jsm.streams.info(streamName(feed))
    assert.ok(info.state.messages > 0, 'the changes went through the stream')
    relay.kill('SIGTERM')
    replicate.kill('SIGTERM')
    const [r1, r2] = await Promise.all([relayed, replicated])
    assert.equal(r1.code, 0, r1.stderr)
    assert.equal(r2.code, 0, r2.stderr)
    assert.match(r1.stderr, /tidemark relaying/)
  })

  it('a relay killed mid-publish (SIGKILL) and started again leaves every change in the stream exactly once', async () => {
    const { feed, db, store, jsm, streamUp, streamLast } = await natsFeed()
    const start = () => spawnTidemark(['relay', db, '--nats', nats, '--feed', feed, '--max-changes', '3'])
    let relay = start()
    await streamUp()
    let writing = true
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await store.write(feed, [{ op: 'upsert', key: `k${i % 5}`, data: { i } }, { op: 'delete', key: `k${(i + 2) % 5}` }])
        await delay(1) // SQLite answers synchronously: let the timers run
      }
    })()
    for (let kill = 0; kill < 3; kill++) {
      await delay(400)
      relay.kill('SIGKILL')
      await collect(relay)
      relay = start()
    }
    writing = false
    await writer
    const head = (await store.getFeed(feed)).head
    // Wait for the last relay to publish everything, then read the stream back.
    const end = Date.now() + 30_000
    let last = 0
    while (last < head) {
      assert.ok(Date.now() < end, `the stream reached ${last}, not ${head}`)
      last = await streamLast()
      await delay(100)
    }
    relay.kill('SIGTERM')
    await collect(relay)
    const info = await jsm.streams.info(streamName(feed))
    let expected = 0
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(streamName(feed), { seq })
      const first = Number(m?.header.get('Tidemark-First'))
      const lastOf = Number(m?.header.get('Tidemark-Last'))
      if (expected > 0) assert.equal(first, expected + 1, `stream message ${seq} follows on: no change twice, none left out`)
      expected = lastOf
    }
    assert.equal(expected, head)
  })

  it('serve --relay-nats relays every feed from the feed server\'s process', async () => {
    const { feed, db, store, streamUp, streamLast } = await natsFeed()
    const serve = spawnTidemark(['serve', db, '--port', '0', '--relay-nats', nats])
    const served = collect(serve)
    await streamUp()
    for (let i = 0; i < 20; i++) await store.write(feed, [{ op: 'upsert', key: `k${i}`, data: { i } }])
    const head = (await store.getFeed(feed)).head
    const end = Date.now() + 30_000
    for (;;) {
      if ((await streamLast()) === head) break
      assert.ok(Date.now() < end, 'the embedded relay published up to the head')
      await delay(100)
    }
    serve.kill('SIGTERM')
    const result = await served
    assert.equal(result.code, 0, result.stderr)
  })

  /** A feed created after `args`' process started (the process relays every feed): its changes reach its stream. */
  async function relaysALaterFeed(args: (db: string) => string[], found: string): Promise<void> {
    const { db, store, jsm, streamUp } = await natsFeed()
    const child = spawnTidemark(args(db))
    const ended = collect(child)
    await streamUp()
    const later = uniqueName('cli')
    after(() => jsm.streams.delete(streamName(later)).catch(() => {}))
    await store.ensureFeed(later)
    // Some changes perhaps before the relay finds the feed, some after: all of them reach the stream.
    for (let i = 0; i < 10; i++) await store.write(later, [{ op: 'upsert', key: `k${i}`, data: { i } }])
    await delay(300)
    for (let i = 10; i < 20; i++) await store.write(later, [{ op: 'upsert', key: `k${i}`, data: { i } }])
    const { head, epoch } = await store.getFeed(later)
    const end = Date.now() + 30_000
    for (;;) {
      const m = await jsm.streams.getMessage(streamName(later), { last_by_subj: `tidemark.${later}.${epoch}` }).catch(() => null)
      if (Number(m?.header.get('Tidemark-Last') ?? 0) === head) break
      assert.ok(Date.now() < end, 'the relay found the new feed and published it up to its head')
      await delay(100)
    }
    child.kill('SIGTERM')
    const result = await ended
    assert.equal(result.code, 0, result.stderr)
    assert.ok(result.stderr.split('\n').some((line) => line.includes(later) && line.includes(found)), 'it says which feed it found')
  }

  it('serve --relay-nats relays a feed created after it started', () =>
    relaysALaterFeed((db) => ['serve', db, '--port', '0', '--relay-nats', nats, '--relay-scan-every', '200ms'], 'created since the relays started'))

  it('relay <file> without --feed relays a feed created after it started', () =>
    relaysALaterFeed((db) => ['relay', db, '--nats', nats, '--scan-every', '200ms'], 'created since the relays started'))
})
