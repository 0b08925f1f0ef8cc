/**
 * Several feeds relayed to one broker, one Relay (and one broker connection) per feed: what
 * `tidemark relay` runs, and what `tidemark serve --relay-nats/--relay-amqp` embeds in the feed
 * server's process.
 */
import type { Logger } from '../store/store.js'
import { brokerSink, type BrokerChoice, type SinkSettings } from '../transport/broker/broker-choice.js'
import type { FeedSource } from '../transport/feed-source.js'
import { createRelay, type Relay } from './relay.js'

export interface RelayFeedsOptions {
  source: FeedSource
  feeds: readonly string[]
  broker: BrokerChoice
  sink?: SinkSettings
  maxChangesPerMessage?: number
  logger?: Logger
}

export interface RunningRelays {
  relays: Relay[]
  /** Settles when every relay has stopped; rejects when one fails for good (an unknown feed, a refused token). */
  done: Promise<void>
  stop(): Promise<void>
}

export async function relayFeeds(options: RelayFeedsOptions): Promise<RunningRelays> {
  const relays: Relay[] = []
  for (const feed of options.feeds) {
    relays.push(
      createRelay({
        source: options.source,
        feed,
        sink: await brokerSink(options.broker, options.sink ?? {}),
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.maxChangesPerMessage !== undefined ? { maxChangesPerMessage: options.maxChangesPerMessage } : {}),
      }),
    )
  }
  const done = Promise.all(relays.map((r) => r.run())).then(() => undefined)
  return {
    relays,
    done,
    async stop() {
      await Promise.all(relays.map((r) => r.stop()))
    },
  }
}
