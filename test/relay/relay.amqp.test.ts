import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { connect, type ConsumeMessage } from 'amqplib'
import { createRelay, type Relay } from '../../src/relay/relay.js'
import { Backoff } from '../../src/transport/backoff.js'
import { decodeMessage } from '../../src/transport/broker/broker-message.js'
import { AmqpSink } from '../../src/transport/amqp/amqp-sink.js'
import { exchangeName, headerString, relayQueueName } from '../../src/transport/amqp/amqp-settings.js'
import { until } from '../helpers/broker-replica.js'
import { amqpUrl, uniqueName } from '../helpers/brokers.js'
import { sourceFixture } from '../helpers/replica-fixture.js'

const url = await amqpUrl()
const admin = await connect(url)
const channel = await admin.createChannel()
after(() => admin.close())

/** A feed, its exchange with an observer queue bound to it, and relays to start. */
async function setup() {
  const prefix = uniqueName('tmr')
  const fx = await sourceFixture('customers')
  const exchange = exchangeName('customers', prefix)
  await channel.assertExchange(exchange, 'topic', { durable: true })
  const observer = (await channel.assertQueue('', { exclusive: true })).queue
  await channel.bindQueue(observer, exchange, '#')
  const seen: ConsumeMessage[] = []
  await channel.consume(observer, (m) => m && seen.push(m), { noAck: true })
  after(async () => {
    await channel.deleteExchange(exchange).catch(() => {})
    await channel.deleteQueue(relayQueueName('customers', 'position', prefix)).catch(() => {})
  })
  const relay = (): Relay =>
    createRelay({
      source: fx.local,
      feed: 'customers',
      sink: new AmqpSink({ url, prefix }),
      waitMs: 200,
      maxChangesPerMessage: 5,
      backoff: new Backoff({ baseMs: 20, capMs: 200 }),
    })
  /** What the observer received, checked to be an exact chain from `from` to `to`. */
  const assertChain = async (from: number, to: number) => {
    await until(() => seen.length > 0 && decode(seen.at(-1)!).last >= to, `messages up to ${to}`)
    let expected = from
    for (const m of seen) {
      const b = decode(m)
      assert.equal(b.first, expected, `message ${m.properties.messageId} starts at ${expected}`)
      assert.equal(m.properties.messageId, `${b.epoch}:${b.last}`)
      assert.equal(b.changes.at(-1)!.tx, b.last, 'a message ends a transaction')
      expected = b.last + 1
    }
    assert.equal(expected - 1, to)
  }
  return { fx, prefix, relay, seen, assertChain }
}

function decode(m: ConsumeMessage) {
  const d = decodeMessage((n) => headerString(m.properties.headers?.[n]), m.content)
  assert.equal(d.kind, 'batch')
  if (d.kind !== 'batch') throw new Error('unreachable')
  return d.batch
}

describe('relay → RabbitMQ', () => {
  it('publishes every change with publisher confirms, in seq order, whole transactions per message; a restart publishes nothing twice', async () => {
    const { fx, relay, assertChain } = await setup()
    let r = relay()
    let running = r.run()
    await until(() => r.status().connected, 'the relay connects')
    const writing = fx.write(60, 2)
    for (let i = 0; i < 3; i++) {
      await new Promise((res) => setTimeout(res, 30))
      await r.stop()
      await running
      r = relay()
      running = r.run()
    }
    await writing
    const head = (await fx.source.getFeed('customers')).head
    await r.confirmedUpTo(head)
    await assertChain(1, head)
    await r.stop()
    await running
  })

  it('one relay at a time holds the lock; the standby takes over where the first stopped', async () => {
    const { fx, relay, assertChain } = await setup()
    const a = relay()
    const runA = a.run()
    await until(() => a.status().connected, 'the first relay connects')
    const b = relay()
    const runB = b.run()
    await fx.write(30, 2)
    await a.confirmedUpTo((await fx.source.getFeed('customers')).head)
    await until(() => /holds .*relay-lock/.test(b.status().lastError ?? ''), 'the second relay is refused the lock')
    assert.equal(b.status().connected, false, 'the second relay stands by')
    await a.stop()
    await runA
    await fx.write(30, 2)
    const head = (await fx.source.getFeed('customers')).head
    await b.confirmedUpTo(head)
    await assertChain(1, head)
    await b.stop()
    await runB
  })
})
