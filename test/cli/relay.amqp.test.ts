import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { connect } from 'amqplib'
import { createFeedServer } from '../../src/server/feed-server.js'
import { readReplicas } from '../../src/store/sqlite/replica-report.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { exchangeName, relayQueueName, replicaQueueName } from '../../src/transport/amqp/amqp-settings.js'
import { amqpUrl, uniqueName } from '../helpers/brokers.js'
import { tmpDir } from '../helpers/tmp.js'
import { collect, spawnTidemark } from './run-cli.js'

const amqp = await amqpUrl()

describe('tidemark relay / replicate --amqp', () => {
  it('a relay process and a replicate process keep a replica in sync through RabbitMQ, the replica on its own queue', async () => {
    const feed = uniqueName('cli') // exchange and queues are named after the feed: unique per run
    const dir = tmpDir()
    const store = SqliteSourceStore.open(join(dir, 'owner.db'))
    await store.ensureFeed(feed)
    const server = await createFeedServer({ store, maintainEveryMs: 0 })
    const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
    const admin = await connect(amqp)
    const ch = await admin.createChannel()
    ch.on('error', () => {})
    after(async () => {
      await ch.deleteQueue(replicaQueueName(feed, feed)).catch(() => {})
      await ch.deleteQueue(relayQueueName(feed, 'position')).catch(() => {})
      await ch.deleteExchange(exchangeName(feed)).catch(() => {})
      await admin.close()
      await server.close()
      await store.close()
    })
    const relay = spawnTidemark(['relay', join(dir, 'owner.db'), '--amqp', amqp, '--feed', feed])
    const relayed = collect(relay)
    const into = join(dir, 'replica.db')
    const replicate = spawnTidemark(['replicate', url, feed, '--into', into, '--amqp', amqp])
    const replicated = collect(replicate)
    // RabbitMQ routes to queues that exist: write once the replica consumes its own.
    for (let t = 0; ; t++) {
      const probe = await admin.createChannel()
      probe.on('error', () => {})
      const consumers = await probe.checkQueue(replicaQueueName(feed, feed)).then((q) => q.consumerCount, () => 0)
      await probe.close().catch(() => {})
      if (consumers > 0) break
      assert.ok(t < 300, 'the replica consumes its queue')
      await delay(100)
    }
    for (let i = 0; i < 50; i++) await store.write(feed, [{ op: 'upsert', key: `k${i % 7}`, data: { i } }])
    const head = (await store.getFeed(feed)).head
    const end = Date.now() + 30_000
    for (;;) {
      const [report] = await readReplicas(into).catch(() => [])
      if (report && report.checkpoint === head) break
      assert.ok(Date.now() < end, `the replica reached ${report?.checkpoint ?? 'nothing'}, not ${head}`)
      await delay(100)
    }
    relay.kill('SIGTERM')
    replicate.kill('SIGTERM')
    const [r1, r2] = await Promise.all([relayed, replicated])
    assert.equal(r1.code, 0, r1.stderr)
    assert.equal(r2.code, 0, r2.stderr)
    assert.doesNotMatch(r2.stderr, /following the log/, 'the changes came over RabbitMQ')
  })
})
