import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { headers } from '@nats-io/nats-core'
import { connect } from '@nats-io/transport-node'
import { createRelay, type Relay } from '../../src/relay/relay.js'
import { decodeMessage } from '../../src/transport/broker/broker-message.js'
import { NatsSink } from '../../src/transport/nats/nats-sink.js'
import { feedSubject, streamName } from '../../src/transport/nats/nats-settings.js'
import { Backoff } from '../../src/transport/backoff.js'
import { natsUrl, uniqueName } from '../helpers/brokers.js'
import { sourceFixture } from '../helpers/replica-fixture.js'

const url = await natsUrl()
const nc = await connect({ servers: url })
const jsm = await jetstreamManager(nc)
after(() => nc.close())

/** Every message of a stream, decoded (throws on a foreign one). */
async function streamBatches(m: JetStreamManager, stream: string) {
  const info = await m.streams.info(stream)
  const out: Array<{ id: string; first: number; last: number; seqs: number[]; txEnds: boolean }> = []
  for (let s = info.state.first_seq; s <= info.state.last_seq; s++) {
    const msg = await m.streams.getMessage(stream, { seq: s })
    if (!msg) continue
    const d = decodeMessage((n) => msg.header.get(n) || undefined, msg.data)
    assert.equal(d.kind, 'batch', `message ${s} is tidemark's`)
    if (d.kind !== 'batch') continue
    const seqs = d.batch.changes.map((c) => c.seq)
    out.push({ id: msg.header.get('Nats-Msg-Id'), first: d.batch.first, last: d.batch.last, seqs, txEnds: d.batch.changes.at(-1)!.tx === d.batch.last })
  }
  return out
}

/** Messages follow each other exactly: no change twice, none missing, whole transactions. */
function assertChain(batches: Awaited<ReturnType<typeof streamBatches>>, from: number, to: number): void {
  let expected = from
  for (const b of batches) {
    assert.equal(b.first, expected, `message ${b.id} starts at ${expected}`)
    assert.deepEqual(b.seqs, Array.from({ length: b.last - b.first + 1 }, (_, i) => b.first + i))
    assert.ok(b.txEnds, `message ${b.id} ends a transaction`)
    expected = b.last + 1
  }
  assert.equal(expected - 1, to, `the stream reaches ${to}`)
}

async function setup(options: { maxChanges?: number } = {}) {
  const prefix = uniqueName('tmr')
  const fx = await sourceFixture('customers')
  const stream = streamName('customers', prefix)
  after(() => jsm.streams.delete(stream).catch(() => {}))
  const relay = (): Relay =>
    createRelay({
      source: fx.local,
      feed: 'customers',
      sink: new NatsSink({ servers: url, prefix }),
      waitMs: 200,
      maxChangesPerMessage: options.maxChanges ?? 7,
      backoff: new Backoff({ baseMs: 20, capMs: 200 }),
    })
  return { fx, prefix, stream, relay }
}

describe('relay → NATS JetStream', () => {
  it('publishes every change from the head on, in seq order, whole transactions per message', async () => {
    const { fx, stream, relay } = await setup()
    await fx.write(5, 2) // before the relay: left to the log
    const r = relay()
    const running = r.run()
    await waitFor(() => r.status().connected)
    const head0 = (await fx.source.getFeed('customers')).head
    await fx.write(40, 3)
    const head = (await fx.source.getFeed('customers')).head
    await r.confirmedUpTo(head)
    await r.stop()
    await running
    assertChain(await streamBatches(jsm, stream), head0 + 1, head)
  })

  it('a relay restarted mid-stream continues after what the stream holds, publishing nothing twice', async () => {
    const { fx, stream, relay } = await setup()
    let r = relay()
    let running = r.run()
    await waitFor(() => r.status().connected)
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
    await r.stop()
    await running
    assertChain(await streamBatches(jsm, stream), 1, head)
  })

  it('two relays of one feed never interleave nor duplicate: conditional publishing lets one win, the other resyncs', async () => {
    const { fx, stream, relay } = await setup({ maxChanges: 3 })
    const a = relay()
    const b = relay()
    const runs = [a.run(), b.run()]
    await waitFor(() => a.status().connected && b.status().connected)
    await fx.write(80, 2)
    const head = (await fx.source.getFeed('customers')).head
    await Promise.all([a.confirmedUpTo(head), b.confirmedUpTo(head)])
    await Promise.all([a.stop(), b.stop()])
    await Promise.all(runs)
    assertChain(await streamBatches(jsm, stream), 1, head)
  })

  it('ignores a forged message claiming a higher seq, and recreates a deleted stream', async () => {
    const { fx, prefix, stream, relay } = await setup()
    await fx.write(3)
    const epoch = (await fx.source.getFeed('customers')).epoch
    const r = relay()
    const running = r.run()
    await waitFor(() => r.status().connected)
    await r.stop()
    await running
    // A message that looks like the relay's, far ahead of the log.
    const js = (await import('@nats-io/jetstream')).jetstream(nc)
    const h = headers()
    h.set('Tidemark-Format', 'changes-ndjson-v1')
    h.set('Tidemark-Feed', 'customers')
    h.set('Tidemark-Epoch', epoch)
    h.set('Tidemark-First', '1000000')
    h.set('Tidemark-Last', '1000000')
    await js.publish(feedSubject('customers', epoch, prefix), '{"seq":1000000,"key":"x","op":"delete","tx":1000000,"ts":0}\n', { msgID: `${epoch}:1000000` })
    const r2 = relay()
    const running2 = r2.run()
    await waitFor(() => r2.status().connected)
    assert.equal(r2.status().published, 3, 'it starts from the head, not the forged position')
    await fx.write(2)
    await r2.confirmedUpTo(5)
    await jsm.streams.delete(stream)
    await fx.write(2)
    await r2.confirmedUpTo(7)
    // The stream was made again, and the relay went on from what it had confirmed, not from the head.
    assertChain(await streamBatches(jsm, stream), 6, 7)
    await r2.stop()
    await running2
  })
})

async function waitFor(ok: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!ok()) {
    if (Date.now() > until) throw new Error('timed out waiting')
    await new Promise((r) => setTimeout(r, 10))
  }
}
