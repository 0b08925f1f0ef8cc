import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { connect } from 'amqplib'
import type { Delivery } from '../../src/transport/transport.js'
import { exchangeName, replicaQueueArguments, replicaQueueName } from '../../src/transport/amqp/amqp-settings.js'
import { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js'
import { brokerMessage, until } from '../helpers/broker-replica.js'
import { amqpUrl, uniqueName } from '../helpers/brokers.js'

const url = await amqpUrl()
const admin = await connect(url)
admin.on('error', () => {})
after(() => admin.close())

const FEED = 'customers'
const EPOCH = 'e1'
const message = (first: number, last = first) => brokerMessage(FEED, EPOCH, first, last)

describe('RabbitMQ transport: merged deliveries', () => {
  it('hands the messages waiting to the replica as one delivery, in order, and acks them all after it', async () => {
    const prefix = uniqueName('tmm')
    const ch = await admin.createChannel()
    ch.on('error', () => {})
    const queue = replicaQueueName(FEED, 'r', prefix)
    const exchange = exchangeName(FEED, prefix)
    await ch.assertExchange(exchange, 'topic', { durable: true })
    await ch.assertQueue(queue, { durable: true, arguments: replicaQueueArguments({}) })
    await ch.bindQueue(queue, exchange, EPOCH)
    const publish = (m: ReturnType<typeof message>) => ch.publish(exchange, EPOCH, m.body, { headers: m.headers, messageId: m.id })
    const controller = new AbortController()
    const deliveries = new AmqpTransport({ url, prefix, queue: 'r' }).subscribe(FEED, { epoch: EPOCH, position: () => 0, signal: controller.signal })
    try {
      publish(message(1, 2))
      const first = (await deliveries.next()).value as Delivery
      assert.deepEqual(first.changes.map((c) => c.seq), [1, 2])
      await first.ack?.()
      // While the replica is busy with a delivery, three more messages arrive (and a foreign one).
      publish(message(3, 4))
      ch.publish(exchange, EPOCH, Buffer.from('not a change'))
      publish(message(5))
      publish(message(6, 8))
      await until(async () => (await ch.checkQueue(queue)).messageCount === 0, 'RabbitMQ hands them all over (prefetch 16)')
      await delay(200)
      const merged = (await deliveries.next()).value as Delivery
      assert.deepEqual(merged.changes.map((c) => c.seq), [3, 4, 5, 6, 7, 8])
      await merged.ack?.()
    } finally {
      controller.abort()
      await deliveries.return(undefined).catch(() => {})
    }
    // Nothing left unacked: with the consumer gone, no message went back to the queue.
    await delay(200)
    assert.equal((await ch.checkQueue(queue)).messageCount, 0)
    await ch.deleteQueue(queue)
    await ch.deleteExchange(exchange)
    await ch.close()
  })
})
