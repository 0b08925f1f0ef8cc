import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { headers } from '@nats-io/nats-core'
import { connect } from '@nats-io/transport-node'
import type { Delivery } from '../../src/transport/transport.js'
import { feedSubject, streamName } from '../../src/transport/nats/nats-settings.js'
import { NatsTransport } from '../../src/transport/nats/nats-transport.js'
import { brokerMessage } from '../helpers/broker-replica.js'
import { natsUrl, uniqueName } from '../helpers/brokers.js'

const servers = await natsUrl()
const FEED = 'customers'
const EPOCH = 'e1'
const message = (first: number, last = first) => brokerMessage(FEED, EPOCH, first, last)

describe('NATS transport: merged deliveries', () => {
  it('hands the messages waiting to the replica as one delivery, in order, up to maxDeliveryChanges', async () => {
    const prefix = uniqueName('tmm')
    const nc = await connect({ servers })
    const jsm = await jetstreamManager(nc)
    const stream = streamName(FEED, prefix)
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.${FEED}.*`] })
    const js = jetstream(nc)
    const publish = async (m: ReturnType<typeof message>, subject = feedSubject(FEED, EPOCH, prefix)) => {
      const h = headers()
      for (const [k, v] of Object.entries(m.headers)) h.set(k, v)
      await js.publish(subject, m.body, { headers: h, msgID: m.id })
    }
    const controller = new AbortController()
    const deliveries = new NatsTransport({ servers, prefix, maxDeliveryChanges: 4 }).subscribe(FEED, { epoch: EPOCH, position: () => 0, signal: controller.signal })
    try {
      await publish(message(1, 2))
      const first = (await deliveries.next()).value as Delivery
      assert.deepEqual(first.changes.map((c) => c.seq), [1, 2])
      // While the replica is busy with a delivery, more messages arrive (and one of another epoch).
      await publish(message(3, 4))
      await publish(message(3, 3), feedSubject(FEED, 'e0', prefix))
      await publish(message(5))
      await publish(message(6, 7))
      await publish(message(8, 9))
      await delay(300)
      assert.deepEqual(((await deliveries.next()).value as Delivery).changes.map((c) => c.seq), [3, 4, 5], 'merged up to 4 changes')
      // The queue was full meanwhile (5 changes ≥ 4): 8–9 waited with the client, and come next.
      const rest: number[] = []
      while (rest.length < 4) rest.push(...((await deliveries.next()).value as Delivery).changes.map((c) => c.seq))
      assert.deepEqual(rest, [6, 7, 8, 9])
    } finally {
      controller.abort()
      await deliveries.return(undefined).catch(() => {})
      await jsm.streams.delete(stream)
      await nc.close()
    }
  })
})
