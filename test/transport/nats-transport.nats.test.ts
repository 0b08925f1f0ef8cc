import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { headers } from '@nats-io/nats-core'
import { connect } from '@nats-io/transport-node'
import { createRelay } from '../../src/relay/relay.js'
import { Backoff } from '../../src/transport/backoff.js'
import { FallbackTransport } from '../../src/transport/broker/fallback-transport.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { NatsSink } from '../../src/transport/nats/nats-sink.js'
import { feedSubject, streamName, type NatsStreamSettings } from '../../src/transport/nats/nats-settings.js'
import { NatsTransport } from '../../src/transport/nats/nats-transport.js'
import { brokerReplica, scrambledMessages, teardown, until } from '../helpers/broker-replica.js'
import { natsUrl, startNatsServer, uniqueName, type NatsServer } from '../helpers/brokers.js'
import { sourceFixture } from '../helpers/replica-fixture.js'

const sharedUrl = await natsUrl()

/** A feed, a relay publishing it to its own stream, and a way to start replicas over NATS with the log behind. */
async function setup(servers = sharedUrl, stream: NatsStreamSettings = {}, server?: NatsServer) {
  const prefix = uniqueName('tmt')
  const onTeardown = teardown() // last registered, first run
  // The test's own server stops last, once every client of it has closed.
  if (server) onTeardown(() => server.stop())
  const fx = await sourceFixture('customers')
  const admin = await connect({ servers, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100, timeout: 2000 })
  const jsm = await jetstreamManager(admin)
  onTeardown(() => admin.close())
  onTeardown(() => jsm.streams.delete(streamName('customers', prefix)))
  const relay = createRelay({
    source: fx.local,
    feed: 'customers',
    sink: new NatsSink({ servers, prefix, stream }),
    waitMs: 200,
    maxChangesPerMessage: 20,
    backoff: new Backoff({ baseMs: 20, capMs: 200 }),
  })
  const relaying = relay.run()
  onTeardown(() => relay.stop())
  await until(() => relay.status().connected, 'the relay connects')
  const transports: FallbackTransport[] = []
  const replica = (name = 'replica', headCheckMs?: number) => {
    const r = brokerReplica(fx, (source) => {
      const t = new FallbackTransport(new NatsTransport({ servers, prefix, checkMs: 200 }), new LongPollTransport(source, { waitMs: 200 }), { retryMs: 300 })
      transports.push(t)
      return t
    }, name, headCheckMs)
    onTeardown(() => r.close())
    return { ...r, transport: transports.at(-1) as FallbackTransport }
  }
  const subject = async () => feedSubject('customers', (await fx.source.getFeed('customers')).epoch, prefix)
  return { fx, prefix, admin, jsm, js: jetstream(admin), relay, relaying, replica, subject, stream: streamName('customers', prefix) }
}

describe('NATS JetStream transport', () => {
  it('a replica follows the feed from the stream, with no pull from the log once live', async () => {
    const s = await setup()
    await s.fx.write(30, 2)
    const r = s.replica('replica', 10_000) // no stall pulls: this test counts pulls
    await r.exact()
    await until(() => r.transport.current === 'broker' && r.replica.phase === 'live', 'live on NATS')
    const pulls = r.source.pulls
    const polls = r.source.polls
    await s.fx.write(150, 3)
    await r.exact()
    assert.equal(r.source.pulls, pulls, 'no change came from the log')
    assert.equal(r.source.polls, polls, 'no long-poll either')
    assert.equal(r.replica.phase, 'live')
  })

  it('skips what is not a change of its feed and epoch, drops a redelivered message, heals a forged higher seq from the log', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(10, 2)
    await r.exact()
    const subject = await s.subject()
    const epoch = (await s.fx.source.getFeed('customers')).epoch
    const tidemark = (feed: string, ep: string, seq: number) => {
      const h = headers()
      h.set('Tidemark-Format', 'changes-ndjson-v1')
      h.set('Tidemark-Feed', feed)
      h.set('Tidemark-Epoch', ep)
      h.set('Tidemark-First', String(seq))
      h.set('Tidemark-Last', String(seq))
      return h
    }
    const line = (seq: number) => `{"seq":${seq},"key":"forged","op":"upsert","data":"x","tx":${seq},"ts":0}\n`
    const head = (await s.fx.source.getFeed('customers')).head
    await s.js.publish(subject, 'hello, not a change')
    await s.js.publish(subject, line(head + 1), { headers: tidemark('customers', 'another-epoch', head + 1) })
    await s.js.publish(subject, line(head + 1), { headers: tidemark('orders', epoch, head + 1) })
    await s.js.publish(subject, 'not ndjson', { headers: tidemark('customers', epoch, head + 1) })
    // A message the relay published, again (a republish outside the duplicate window looks like this).
    const info = await s.jsm.streams.info(s.stream)
    const copy = (await s.jsm.streams.getMessage(s.stream, { seq: info.state.last_seq - 3 }))!
    await s.js.publish(subject, copy.data, { headers: copy.header })
    // A change far ahead of the log: the replica must not apply it, only look in the log.
    const pulls = r.source.pulls
    await s.js.publish(subject, line(head + 1000), { headers: tidemark('customers', epoch, head + 1000) })
    await until(() => r.source.pulls > pulls, 'the replica looks in the log for what the forged message claims')
    await s.fx.write(20, 2)
    await r.exact()
    assert.ok(!(await r.store.rows('replica', null, 1000)).some((row) => row.key === 'forged'))
  })

  it('falls back to long-polling the log when the connection is cut, and returns to NATS when it is back', async () => {
    const server = await startNatsServer({ stopAfter: false })
    const s = await setup(server.url, {}, server)
    const r = s.replica()
    await s.fx.write(10, 2)
    await r.exact()
    await until(() => r.transport.current === 'broker', 'on NATS')
    const writing = s.fx.write(100, 2)
    await new Promise((res) => setTimeout(res, 20))
    await server.stop() // mid-stream
    await writing
    await until(() => r.transport.current === 'fallback', 'on the log')
    await s.fx.write(20, 2)
    await r.exact()
    await server.start()
    await until(() => r.transport.current === 'broker' && s.relay.status().connected, 'back on NATS', 30_000)
    const polls = r.source.polls
    await s.fx.write(50, 2)
    await r.exact()
    await until(() => r.transport.current === 'broker', 'still on NATS')
    assert.ok(r.source.polls - polls <= 2, `the last changes came over NATS (${r.source.polls - polls} long-polls)`)
  })

  it('continues from the log when the stream is deleted and recreated under it', async () => {
    const s = await setup()
    const r = s.replica()
    await s.fx.write(20, 2)
    await r.exact()
    await s.jsm.streams.delete(s.stream)
    await s.fx.write(30, 2) // the relay recreates the stream
    await r.exact()
    await until(() => r.transport.current === 'broker', 'on NATS again')
    await s.fx.write(30, 2)
    await r.exact()
  })

  it('notices a broker that restarted with its store wiped, and loses nothing', async () => {
    const server = await startNatsServer({ stopAfter: false })
    const s = await setup(server.url, {}, server)
    const r = s.replica()
    await s.fx.write(40, 2)
    await r.exact()
    await server.stop()
    await server.start({ wipe: true })
    await s.fx.write(40, 2)
    await r.exact()
    await until(() => r.transport.current === 'broker' && s.relay.status().connected, 'on NATS again', 30_000)
    await s.fx.write(40, 2)
    await r.exact()
  })

  it('a replica whose position the stream no longer holds pulls the difference from the log', async () => {
    const s = await setup(sharedUrl, { maxMessages: 3 })
    const r = s.replica()
    await s.fx.write(10)
    await r.exact()
    await r.replica.stop()
    await s.fx.write(200, 2) // ~20 messages; the stream keeps the last 3
    await s.relay.confirmedUpTo((await s.fx.source.getFeed('customers')).head)
    const pulls = r.source.pulls
    void r.replica.run().catch(() => {})
    await r.exact()
    assert.ok(r.source.pulls > pulls, 'what the stream dropped came from the log')
  })

  it('stays exact when the stream delivers messages out of order, twice or not at all', async () => {
    const seed = Number(process.env.TIDEMARK_SEED ?? Date.now() % 100_000)
    const s = await setup()
    const r = s.replica()
    await s.fx.write(5, 2)
    await r.exact()
    await s.relay.stop() // from here on this test is the (misbehaving) publisher
    const from = (await s.fx.source.getFeed('customers')).head
    await s.fx.write(60, 3)
    const subject = await s.subject()
    try {
      for (const m of await scrambledMessages(s.fx, from, seed)) {
        const h = headers()
        for (const [k, v] of Object.entries(m.headers)) h.set(k, v)
        await s.js.publish(subject, m.body, { headers: h })
      }
      await r.exact()
    } catch (error) {
      throw new Error(`${(error as Error).message} (TIDEMARK_SEED=${seed})`, { cause: error })
    }
  })
})
