import { BadRequestError } from '../../errors.js'
import type { RunningRelays } from '../../relay/relay-feeds.js'
import type { SourceStore } from '../../store/store.js'
import type { FeedSource } from '../../transport/feed-source.js'
import type { HttpFeedSource } from '../../transport/http/http-feed-source.js'
import type { Registrar } from '../cli.js'
import { collect, durationOption, examples, parseDurationOption, parsePositive } from '../options.js'
import { stopSignal } from '../stop-signal.js'
import { CA_HELP, feedServerClient } from '../feed-server-client.js'

interface RelayOptions {
  nats?: string
  amqp?: string
  feed?: string[]
  token?: string
  ca?: string
  prefix?: string
  maxAge?: number
  streamReplicas?: number
  maxChanges?: number
  scanEvery?: number
}

/** `tidemark relay <db|url> --nats <url> | --amqp <url>`: publishes feeds to a broker until SIGINT or SIGTERM. */
export const registerRelay: Registrar = (program, cli) => {
  program
    .command('relay')
    .description("publish feeds' changes, in seq order, to NATS JetStream or RabbitMQ for replicas to consume")
    .argument('<source>', "the source's SQLite file, or a feed server's URL (http://…)")
    .option('--nats <url>', 'publish to NATS JetStream, e.g. nats://127.0.0.1:4222 (one stream per feed)')
    .option('--amqp <url>', 'publish to RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672 (one topic exchange per feed)')
    .option('--feed <name>', 'relay this feed (repeatable; default: every feed of the source)', collect)
    .option('--token <token>', 'bearer token when the source is a feed server (default: $TIDEMARK_TOKEN)')
    .option('--ca <file>', CA_HELP)
    .option('--prefix <prefix>', 'stream, subject, exchange and queue name prefix', 'tidemark')
    .option('--max-age <duration>', 'NATS: drop stream messages older than this (default 7d)', parseDurationOption)
    .option('--stream-replicas <n>', 'NATS: copies of each stream in a cluster (default 1)', parsePositive)
    .option('--max-changes <n>', 'changes per message at most (whole transactions; default 2000)', parsePositive)
    .addOption(durationOption('--scan-every <duration>', 'from a file, without --feed: how often to look for feeds created since, to relay them too', 5000))
    .addHelpText(
      'after',
      `
Prints "tidemark relaying …" on stderr once started. A restarted relay continues after what the
broker holds; from a file without --feed, feeds created later are relayed too (from the start of
their log) once found; several relays of one feed do not interleave (NATS: conditional publishing;
RabbitMQ: one holds a lock queue, the others wait). See docs/brokers.md.
${examples([
  'tidemark relay shop.db --nats nats://127.0.0.1:4222',
  'tidemark relay http://127.0.0.1:7480 --amqp amqp://guest:guest@127.0.0.1:5672 --feed customers',
  'tidemark replicate http://127.0.0.1:7480 customers --into orders.db --nats nats://127.0.0.1:4222',
])}`,
    )
    .action(async (where: string, options: RelayOptions) => {
      if ((options.nats === undefined) === (options.amqp === undefined)) throw new BadRequestError('give one broker: --nats <url> or --amqp <url>')
      const stop = stopSignal(cli.note.bind(cli))
      const log = cli.logger('relay')
      let store: SourceStore | undefined
      let http: HttpFeedSource | undefined
      let running: RunningRelays | undefined
      try {
        const [{ relayFeeds }, { brokerKind }, { LocalFeedSource }] = await Promise.all([
          import('../../relay/relay-feeds.js'),
          import('../../transport/broker/broker-choice.js'),
          import('../../transport/local-feed-source.js'),
        ])
        const url = (options.nats ?? options.amqp) as string
        const kind = brokerKind(url)
        if (kind !== (options.nats !== undefined ? 'nats' : 'amqp')) throw new BadRequestError(`${url} is not a ${options.nats !== undefined ? 'NATS' : 'RabbitMQ'} URL`)
        let source: FeedSource
        let feeds = options.feed
        let discover: { feeds: () => Promise<string[]>; everyMs?: number } | undefined
        if (/^https?:\/\//i.test(where)) {
          const { HttpFeedSource } = await import('../../transport/http/http-feed-source.js')
          http = new HttpFeedSource(where, feedServerClient(options))
          source = http
          if (!feeds) throw new BadRequestError('name the feeds to relay from a feed server with --feed <name>')
        } else {
          const opened = await cli.openStore(where)
          store = opened
          source = new LocalFeedSource(opened)
          if (!feeds) {
            // Every feed: those there now, and those created while it runs.
            const list = async (): Promise<string[]> => (await opened.listFeeds()).map((f) => f.name)
            feeds = await list()
            discover = { feeds: list, ...(options.scanEvery !== undefined ? { everyMs: options.scanEvery } : {}) }
          }
        }
        if (feeds.length === 0 && !discover) throw new BadRequestError(`${where} has no feed to relay`)
        for (const feed of feeds) await source.info(feed) // a mistyped feed is one error line, not a relay retrying for ever
        running = await relayFeeds({
          source,
          feeds,
          broker: { kind, url, prefix: options.prefix ?? 'tidemark' },
          sink: { stream: { ...(options.maxAge !== undefined ? { maxAgeMs: options.maxAge } : {}), ...(options.streamReplicas !== undefined ? { replicas: options.streamReplicas } : {}) } },
          logger: log,
          ...(options.maxChanges !== undefined ? { maxChangesPerMessage: options.maxChanges } : {}),
          ...(discover ? { discover } : {}),
        })
        const named = feeds.length === 0 ? 'no feed yet' : feeds.map((f) => `"${f}"`).join(', ')
        cli.note(`tidemark relaying ${named}${discover ? ' (and feeds created later)' : ''} from ${where} to ${url.replace(/\/\/[^@/]*@/, '//')}`)
        const signal = await Promise.race([stop.signalled, running.done.then(() => undefined)])
        if (signal !== undefined) log.info({ signal }, 'stopping')
      } finally {
        stop.dispose()
        await running?.stop()
        try {
          await store?.close()
        } finally {
          await http?.close()
        }
      }
      setTimeout(() => process.exit(), 3000).unref()
    })
}
