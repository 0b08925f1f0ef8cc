import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { connect } from 'amqplib'
import { createRelay } from '../../src/relay/relay.js'
import { Backoff } from '../../src/transport/backoff.js'
import { FallbackTransport } from '../../src/transport/broker/fallback-transport.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { AmqpSink } from '../../src/transport/amqp/amqp-sink.js'
import { exchangeName, relayQueueName, replicaQueueName } from '../../src/transport/amqp/amqp-settings.js'
import { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js'
import { brokerReplica, debugLogger, scrambledMessages, teardown, until } from '../helpers/broker-replica.js'
import { amqpUrl, uniqueName } from '../helpers/brokers.js'
import { sourceFixture } from '../helpers/replica-fixture.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'

const url = await amqpUrl()
const admin = await connect(url)
admin.on('error', () => {})
after(() => admin.close())

/** A feed, a relay to its own exchange, and replicas over RabbitMQ (through a proxy that can cut them off) with the log behind. */
async function setup() {
  const prefix = uniqueName('tmt')
  const onTeardown = teardown()
  const fx = await sourceFixture('customers')
  const ch = await admin.createChannel()
  ch.on('error', () => {})
  const exchange = exchangeName('customers', prefix)
  const brokerPort = Number(new URL(url).port || 5672)
  const proxy = await tcpProxy(brokerPort)
  const proxied = url.replace(/:(\d+)(\/|$)/, `:${proxy.port}$2`)
  const relay = createRelay({
    source: fx.local,
    feed: 'customers',
    sink: new AmqpSink({ url, prefix }),
    waitMs: 200,
    maxChangesPerMessage: 10,
    backoff: new Backoff({ baseMs: 20, capMs: 200 }),
  })
  void relay.run()
  onTeardown(() => ch.close())
  onTeardown(() => ch.deleteQueue(relayQueueName('customers', 'position', prefix)))
  onTeardown(() => ch.deleteExchange(exchange))
  onTeardown(() => relay.stop())
  await until(() => relay.status().connected, 'the relay connects')
  const replica = (name = 'replica', headCheckMs?: number) => {
    let transport: FallbackTransport | undefined
    const r = brokerReplica(fx, (source) => {
      transport = new FallbackTransport(new AmqpTransport({ url: proxied, prefix, queue: name }), new LongPollTransport(source, { waitMs: 200 }), { retryMs: 300, ...(debugLogger ? { logger: debugLogger } : {}) })
      return transport
    }, name, headCheckMs)
    onTeardown(() => ch.deleteQueue(replicaQueueName('customers', name, prefix)))
    onTeardown(() => r.close())
    return { ...r, transport: transport as FallbackTransport, queue: replicaQueueName('customers', name, prefix) }
  }
  /** Consumers on a queue (0 when it does not exist; checked on a channel of its own, which a 404 closes). */
  const consumers = async (queue: string): Promise<number> => {
    const probe = await admin.createChannel()
    probe.on('error', () => {})
    try {
      return (await probe.checkQueue(queue)).consumerCount
    } catch {
      return 0
    } finally {
      await probe.close().catch(() => {})
    }
  }
  const onBroker = (r: { queue: string; transport: FallbackTransport }) => until(async () => r.transport.current === 'broker' && (await consumers(r.queue)) > 0, 'the replica consumes its queue')
  const epoch = async () => (await fx.source.getFeed('customers')).epoch
  return { fx, prefix, ch, exchange, proxy, relay, replica, epoch, onBroker }
}

function tidemarkHeaders(feed: string, epoch: string, first: number, last = first) {
  return { 'Tidemark-Format': 'changes-ndjson-v1', 'Tidemark-Feed': feed, 'Tidemark-Epoch': epoch, 'Tidemark-First': String(first), 'Tidemark-Last': String(last) }
}
const line = (seq: number) => Buffer.from(`{"seq":${seq},"key":"forged","op":"upsert","data":"x","tx":${seq},"ts":0}\n`)

describe('RabbitMQ transport', () => {
  it('a replica follows the feed from its queue, acking after each apply, with no pull from the log once live', async () => {
    const s = await setup()
    await s.fx.write(30, 2)
    const r = s.replica('replica', 10_000) // no stall pulls: this test counts pulls
    await r.exact()
    await s.onBroker(r)
    const pulls = r.source.pulls
    const polls = r.source.polls
    await s.fx.write(150, 3)
    await r.exact()
    assert.equal(r.source.pulls, pulls, 'no change came from the log')
    assert.equal(r.source.polls, polls, 'no long-poll either')
    await until(async () => (await s.ch.checkQueue(r.queue)).messageCount === 0, 'every message acked')
  })

  it('skips what is not a change of its feed and epoch, drops a message delivered twice, heals a forged higher seq from the log', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(10, 2)
    await r.exact()
    await s.onBroker(r)
    const epoch = await s.epoch()
    const head = (await s.fx.source.getFeed('customers')).head
    s.ch.publish(s.exchange, epoch, Buffer.from('hello, not a change'))
    s.ch.publish(s.exchange, epoch, line(head + 1), { headers: tidemarkHeaders('customers', 'another-epoch', head + 1) })
    s.ch.publish(s.exchange, epoch, line(head + 1), { headers: tidemarkHeaders('orders', epoch, head + 1) })
    s.ch.publish(s.exchange, epoch, Buffer.from('not ndjson'), { headers: tidemarkHeaders('customers', epoch, head + 1) })
    // One of the relay's messages, delivered twice: the replica has it already.
    const again = Buffer.from(`{"seq":${head},"key":"k1","op":"delete","tx":${head},"ts":0}\n`)
    s.ch.sendToQueue(r.queue, again, { headers: tidemarkHeaders('customers', epoch, head) })
    s.ch.sendToQueue(r.queue, again, { headers: tidemarkHeaders('customers', epoch, head) })
    const pulls = r.source.pulls
    s.ch.publish(s.exchange, epoch, line(head + 1000), { headers: tidemarkHeaders('customers', epoch, head + 1000) })
    await until(() => r.source.pulls > pulls, 'the replica looks in the log for what the forged message claims')
    await s.fx.write(20, 2)
    await r.exact()
    assert.ok(!(await r.store.rows('replica', null, 1000)).some((row) => row.key === 'forged'))
    await until(async () => (await s.ch.checkQueue(r.queue)).messageCount === 0, 'bad messages acked, not left to pile up')
  })

  it('falls back to the log when its connection is cut mid-stream and the broker is unreachable, and returns when it is back', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(10, 2)
    await r.exact()
    await s.onBroker(r)
    const writing = s.fx.write(100, 2)
    await new Promise((res) => setTimeout(res, 20))
    s.proxy.refusing = true
    s.proxy.cut() // mid-stream: unacked messages are redelivered later, and dropped as duplicates
    await writing
    await until(() => r.transport.current === 'fallback', 'on the log')
    await s.fx.write(20, 2)
    await r.exact()
    s.proxy.refusing = false
    await s.onBroker(r)
    const polls = r.source.polls
    await s.fx.write(50, 2)
    await r.exact()
    assert.ok(r.source.polls - polls <= 2, `the last changes came over RabbitMQ (${r.source.polls - polls} long-polls)`)
  })

  it('loses nothing when its queue is purged under it', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(10, 2)
    await r.exact()
    await s.onBroker(r)
    const writing = s.fx.write(200, 2)
    for (let i = 0; i < 5; i++) {
      await new Promise((res) => setTimeout(res, 15))
      await s.ch.purgeQueue(r.queue)
    }
    await writing
    await s.ch.purgeQueue(r.queue) // the last messages too: only the head check can notice
    await r.exact()
  })

  it('continues when its queue is deleted and recreated under it, and when the broker lost everything of the feed', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(20, 2)
    await r.exact()
    await s.onBroker(r)
    await s.ch.deleteQueue(r.queue)
    await s.fx.write(30, 2)
    await r.exact()
    await s.onBroker(r)
    // As after a broker restarted with its store wiped: the exchange and every queue of the feed gone.
    await s.ch.deleteExchange(s.exchange)
    await s.ch.deleteQueue(r.queue)
    await s.ch.deleteQueue(relayQueueName('customers', 'position', s.prefix))
    await s.fx.write(30, 2)
    await r.exact()
    await until(() => s.relay.status().connected, 'the relay publishes again')
    await s.onBroker(r)
    const polls = r.source.polls
    await s.fx.write(30, 2)
    await r.exact()
    assert.ok(r.source.polls - polls <= 2, 'the relay publishes again and the replica receives it')
  })

  it('stays exact when its queue delivers messages out of order, twice or not at all', async () => {
    const seed = Number(process.env.TIDEMARK_SEED ?? Date.now() % 100_000)
    const s = await setup()
    const r = s.replica()
    await s.fx.write(5, 2)
    await r.exact()
    await s.onBroker(r)
    await s.relay.stop() // from here on this test is the (misbehaving) publisher
    const from = (await s.fx.source.getFeed('customers')).head
    await s.fx.write(60, 3)
    const epoch = await s.epoch()
    try {
      for (const m of await scrambledMessages(s.fx, from, seed)) s.ch.publish(s.exchange, epoch, m.body, { headers: m.headers, messageId: m.id })
      await r.exact()
    } catch (error) {
      throw new Error(`${(error as Error).message} (TIDEMARK_SEED=${seed})`, { cause: error })
    }
  })
})
