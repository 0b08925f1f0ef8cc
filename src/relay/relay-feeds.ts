/**
 * Several feeds relayed to one broker, one Relay (and one broker connection) per feed: what
 * `tidemark relay` runs, and what `tidemark serve --relay-nats/--relay-amqp` embeds in the feed
 * server's process. With `discover`, feeds created after the start are relayed too: the source is
 * asked for its feeds every `everyMs`, and a relay starts for each new one, from the start of the
 * feed's log (the feeds there at the start: from their heads, as a relay does).
 */
import { silentLogger, type Logger } from '../store/store.js'
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
  /** Also relay the feeds that appear later: `feeds()` lists those there are now, asked every `everyMs` (default 5 000). */
  discover?: { feeds: () => Promise<string[]>; everyMs?: number }
}

export interface RunningRelays {
  /** The relays running, one per feed (the list grows as feeds are discovered). */
  relays: Relay[]
  /** Settles when every relay has stopped; rejects when one fails for good (an unknown feed, a refused token). */
  done: Promise<void>
  stop(): Promise<void>
}

export async function relayFeeds(options: RelayFeedsOptions): Promise<RunningRelays> {
  const logger = options.logger ?? silentLogger
  const relays: Relay[] = []
  const runs: Array<Promise<void>> = []
  const relayed = new Set<string>()
  let failed: (error: unknown) => void = () => {}
  const failure = new Promise<never>((_, reject) => (failed = reject))
  failure.catch(() => {})
  let stopped = false
  const start = async (feed: string, startAt: 'head' | 'log'): Promise<void> => {
    const relay = createRelay({
      source: options.source,
      feed,
      startAt,
      sink: await brokerSink(options.broker, options.sink ?? {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.maxChangesPerMessage !== undefined ? { maxChangesPerMessage: options.maxChangesPerMessage } : {}),
    })
    relayed.add(feed)
    relays.push(relay)
    runs.push(relay.run().catch((error: unknown) => failed(error)))
  }
  for (const feed of options.feeds) await start(feed, 'head')

  let timer: NodeJS.Timeout | undefined
  let scanning: Promise<void> = Promise.resolve()
  const discover = options.discover
  if (discover) {
    const scan = async (): Promise<void> => {
      try {
        for (const feed of await discover.feeds()) {
          if (stopped || relayed.has(feed)) continue
          // Created since the start: nothing of it was published, so all its log is.
          await start(feed, 'log')
          logger.info({ feed }, `relaying feed "${feed}", created since the relays started`)
        }
      } catch (error) {
        logger.warn({ err: (error as Error).message }, `looking for new feeds to relay failed (${(error as Error).message}); trying again later`)
      }
    }
    const next = (): void => {
      if (stopped) return
      timer = setTimeout(() => {
        scanning = scan().finally(next)
      }, discover.everyMs ?? 5000)
    }
    next()
  }

  let stopping: Promise<void> | undefined
  let ended: () => void = () => {}
  const done = Promise.race([failure, new Promise<void>((resolve) => (ended = resolve))])
  return {
    relays,
    done,
    stop() {
      stopping ??= (async () => {
        stopped = true
        clearTimeout(timer)
        await scanning // a relay it is starting is stopped with the others
        await Promise.all(relays.map((r) => r.stop()))
        await Promise.all(runs)
        ended()
      })()
      return stopping
    },
  }
}
