/**
 * The relay's JetStream side. Two things keep the stream exact:
 *
 * - **Message ids** `<epoch>:<last>` (`Nats-Msg-Id`): within the stream's duplicate window a
 *   republished message is dropped by JetStream, so a relay restarted mid-publish never stores a
 *   change twice; and a restarted relay continues after the last message of its epoch's subject.
 * - **Conditional publishing** (idempotent publishing, no leader election): every message says what
 *   it expects the stream's last message to be — the first of a session the stream's last sequence
 *   as read when the session began, each next one the id of the message before it. Two relays that
 *   race for one feed cannot interleave: the loser's publish is refused (`wrong last sequence` /
 *   `wrong last msg ID`), it resyncs from the stream, finds the winner's messages there and goes on
 *   after them. JetStream before 2.10 ignores an expected last sequence of 0, so the very first
 *   message of an empty stream is guarded by its id alone (docs/brokers.md).
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream'
import { headers, type NatsConnection } from '@nats-io/nats-core'
import { BrokerUnavailableError } from '../../errors.js'
import type { Seq } from '../../protocol/types.js'
import { brokerError, type RelaySink } from '../../relay/relay.js'
import { encodeBatch, messageId, readHeaders, type BrokerBatch } from '../broker/broker-message.js'
import { feedSubject, natsConnect, streamConfig, streamName, type NatsConnectOptions, type NatsStreamSettings } from './nats-settings.js'

export interface NatsSinkOptions extends NatsConnectOptions {
  stream?: NatsStreamSettings
  /** Messages published and not yet confirmed, at most. Default 64. */
  maxInFlight?: number
}

export class NatsSink implements RelaySink {
  readonly name = 'nats'
  private nc: NatsConnection | undefined
  private js: JetStreamClient | undefined
  private subject = ''
  /** What the next publish expects the stream to end with. */
  private expect: { lastSequence: number } | { lastMsgID: string } | undefined
  private inFlight: Array<Promise<PubAck>> = []

  constructor(private readonly options: NatsSinkOptions) {}

  async open(feed: string, epoch: string, signal: AbortSignal): Promise<Seq | null> {
    await this.close()
    signal.throwIfAborted()
    const prefix = this.options.prefix ?? 'tidemark'
    const nc = await natsConnect(this.options)
    this.nc = nc
    try {
      const jsm = await jetstreamManager(nc)
      const stream = streamName(feed, prefix)
      await ensureStream(jsm, feed, prefix, this.options.stream ?? {})
      this.js = jetstream(nc)
      this.subject = feedSubject(feed, epoch, prefix)
      // The stream's end first, then the epoch's last message: if another relay published in
      // between, that message is past the end read, and both are read again — so the first publish
      // never expects an end that already includes messages this relay has not seen.
      let info = await jsm.streams.info(stream)
      let lastOfEpoch = await jsm.streams.getMessage(stream, { last_by_subj: this.subject })
      while (lastOfEpoch && lastOfEpoch.seq > info.state.last_seq) {
        info = await jsm.streams.info(stream)
        lastOfEpoch = await jsm.streams.getMessage(stream, { last_by_subj: this.subject })
      }
      this.expect = { lastSequence: info.state.last_seq }
      if (!lastOfEpoch) return null
      const head = readHeaders((name) => lastOfEpoch.header.get(name) || undefined)
      // Only a message this relay could have written counts; anything else on the subject is ignored.
      if (!head || head.epoch !== epoch || head.feed !== feed || lastOfEpoch.header.get('Nats-Msg-Id') !== messageId(epoch, head.last)) return null
      return head.last
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw error
      throw brokerError('nats', `cannot set up the stream of feed "${feed}"`, error)
    }
  }

  async publish(batch: BrokerBatch): Promise<void> {
    const js = this.js
    if (!js || !this.expect) throw new BrokerUnavailableError('nats: publish before open')
    const encoded = encodeBatch(batch)
    const h = headers()
    for (const [name, value] of Object.entries(encoded.headers)) h.set(name, value)
    const expect = this.expect
    this.expect = { lastMsgID: encoded.id }
    const ack = js.publish(this.subject, encoded.body, { msgID: encoded.id, headers: h, expect })
    ack.catch(() => {}) // collected by flush()
    this.inFlight.push(ack)
    if (this.inFlight.length >= (this.options.maxInFlight ?? 64)) await this.flush()
  }

  async flush(): Promise<void> {
    const pending = this.inFlight
    this.inFlight = []
    const results = await Promise.allSettled(pending)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw brokerError('nats', 'JetStream refused a message (another relay published first, or the stream went away)', failed.reason)
  }

  async close(): Promise<void> {
    this.inFlight = []
    this.expect = undefined
    this.js = undefined
    const nc = this.nc
    this.nc = undefined
    if (nc && !nc.isClosed()) await nc.close().catch(() => {})
  }
}

/** Creates the feed's stream when missing; an existing one keeps its settings (change them with `nats stream edit`). */
export async function ensureStream(jsm: JetStreamManager, feed: string, prefix: string, settings: NatsStreamSettings): Promise<void> {
  const name = streamName(feed, prefix)
  try {
    await jsm.streams.info(name)
  } catch (error) {
    if ((error as { code?: unknown }).code !== 10059 && !/not found/i.test((error as Error).message)) throw error
    await jsm.streams.add(streamConfig(feed, prefix, settings))
  }
}
