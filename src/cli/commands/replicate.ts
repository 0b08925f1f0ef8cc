import { asTidemarkError, BadRequestError, isTidemarkError, type ErrorCode } from '../../errors.js'
import type { Logger } from '../../store/store.js'
import type { ChangeTransport } from '../../transport/transport.js'
import type { ReplicaStore } from '../../store/replica-store.js'
import type { FeedSource } from '../../transport/feed-source.js'
import type { HttpFeedSource } from '../../transport/http/http-feed-source.js'
import type { Registrar } from '../cli.js'
import { examples, parseDurationOption, parsePositive } from '../options.js'
import { Backoff } from '../../transport/backoff.js'
import { stopSignal } from '../stop-signal.js'
import { CA_HELP, feedServerClient } from '../feed-server-client.js'

interface ReplicateOptions {
  into: string
  token?: string
  ca?: string
  name?: string
  force?: boolean
  snapshotChunk?: number
  headCheck?: number
  reconcileEvery?: number
  sla?: number
  reconcileOnStart?: boolean
  verifyOnly?: boolean
  nats?: string
  amqp?: string
}

/** `tidemark replicate <url> <feed> --into <db>`: one replica kept in sync until SIGINT or SIGTERM. */
export const registerReplicate: Registrar = (program, cli) => {
  program
    .command('replicate')
    .description('keep a replica of a feed in a SQLite file or a PostgreSQL database: bootstrap when needed, then follow the feed live')
    .argument('<url>', "the feed server's URL, e.g. http://127.0.0.1:7480")
    .argument('<feed>', 'feed name')
    .requiredOption('--into <db>', 'SQLite file (created when missing) or postgres:// URL of the replica; may be your service\'s own database')
    .option('--token <token>', 'bearer token for the feed server (default: $TIDEMARK_TOKEN)')
    .option('--ca <file>', CA_HELP)
    .option('--name <name>', "the replica's name in the file (default: the feed's name)")
    .option('--force', 'take over a replica of this name that copies another feed or source (it re-bootstraps)')
    .option('--snapshot-chunk <n>', 'rows per snapshot request while bootstrapping', parsePositive)
    .option('--head-check <duration>', "how often to compare the checkpoint with the source's head", parseDurationOption)
    .option('--reconcile-every <duration>', 'compare with the source by digests on this schedule (±10% jitter), e.g. 1h', parseDurationOption)
    .option('--sla <duration>', "reconcile when the checkpoint has not moved for this long while the source's head has, e.g. 30s", parseDurationOption)
    .option('--reconcile-on-start', 'reconcile once at start-up')
    .option('--verify-only', 'scheduled, start-up and SLA runs report drift without repairing it')
    .option('--nats <url>', 'receive changes from NATS JetStream (a `tidemark relay` publishes them); long-polls the feed server while NATS is away')
    .option('--amqp <url>', "receive changes from RabbitMQ through this replica's own queue; long-polls the feed server while RabbitMQ is away")
    .addHelpText(
      'after',
      `
Until the feed server answers (it may not be up yet) this waits, retrying, and creates nothing; a
wrong token, an unknown feed or a URL that is not a tidemark feed server ends it at once (exit codes:
docs/cli.md). Prints "tidemark replicating …" on stderr once it holds the replica; logs are JSON lines on stderr, one per
phase change (bootstrapping, catching-up, live). SIGINT or SIGTERM stops at a transaction
boundary, then exits 0; a second signal exits at once. An interrupted bootstrap resumes from its
last chunk. Read the copy with SQL through the view tidemark_replica_current(name, key, seq, data),
and its progress with \`tidemark status\`.
${examples([
  'tidemark replicate http://127.0.0.1:7480 customers --into orders.db',
  'TIDEMARK_TOKEN=secret tidemark replicate https://feeds.example.com customers --into orders.db --name crm_customers',
  'tidemark replicate http://127.0.0.1:7480 customers --into orders.db --reconcile-every 1h --sla 30s',
  'tidemark status orders.db',
])}`,
    )
    .action(async (url: string, feed: string, options: ReplicateOptions) => {
      const stop = stopSignal(cli.note.bind(cli))
      const log = cli.logger('replica')
      let source: HttpFeedSource | undefined
      let store: ReplicaStore | undefined
      try {
        // Loaded here so that the other commands do not pay for undici.
        const [{ HttpFeedSource }, { openReplicaStore }, { createReplica }] = await Promise.all([
          import('../../transport/http/http-feed-source.js'),
          import('../../store/open.js'),
          import('../../replica/replica.js'),
        ])
        source = new HttpFeedSource(url, feedServerClient(options))
        const description = source.description
        const aborted = new AbortController()
        void stop.signalled.then((signal) => aborted.abort(signal))
        if (!(await awaitSource(source, feed, aborted.signal, log))) return
        store = await openReplicaStore(options.into, { create: true, logger: cli.logger('store') })
        const transport = await brokerTransportFor(options, source, options.name ?? feed, cli.logger('transport'))
        const replica = createReplica({
          source,
          feed,
          store,
          logger: log,
          // Said once the claim is taken, so that a refused start prints nothing but its error.
          onPhase: ({ from, to }) => {
            if (from === 'idle' && (to === 'bootstrapping' || to === 'catching-up')) {
              cli.note(`tidemark replicating feed "${feed}" from ${description} into ${store?.location ?? options.into} as replica "${options.name ?? feed}"`)
            }
          },
          ...(options.name !== undefined ? { name: options.name } : {}),
          ...(options.force ? { force: true } : {}),
          ...(options.snapshotChunk !== undefined ? { snapshotChunk: options.snapshotChunk } : {}),
          ...(options.headCheck !== undefined ? { headCheckMs: options.headCheck } : {}),
          reconcile: {
            ...(options.reconcileEvery !== undefined ? { everyMs: options.reconcileEvery } : {}),
            ...(options.sla !== undefined ? { slaMs: options.sla } : {}),
            ...(options.reconcileOnStart ? { onStart: true } : {}),
            mode: options.verifyOnly ? 'verify' : 'repair',
          },
          ...(transport ? { transport } : {}),
        })
        const running = replica.run()
        // Ends when a signal comes (then stop at a transaction boundary), or when the replica fails
        // for good (apply-failed, conflict, not-a-store: run() rejects and the error is reported).
        const signal = await Promise.race([stop.signalled, running.then(() => undefined)])
        if (signal !== undefined) {
          log.info({ signal }, 'stopping at a transaction boundary')
          await replica.stop()
        }
      } finally {
        stop.dispose()
        try {
          await store?.close()
        } finally {
          await source?.close()
        }
      }
      // If anything still holds the event loop open after a clean close, do not hang on it.
      setTimeout(() => process.exit(), 3000).unref()
    })
}

/** What asking the source again cannot fix: a wrong token, a feed that does not exist, a URL that is not a feed server. */
const FATAL_AT_START: ReadonlySet<ErrorCode> = new Set(['unauthorized', 'forbidden', 'unknown-feed', 'bad-request', 'not-a-feed-server'])

/**
 * Asks the source about the feed before anything else, until it answers: a mistyped token or feed
 * name, or a URL that leads to some other HTTP server, is then one error line rather than a
 * replicator retrying for ever, and a server that is down (or not up yet: a normal start-up order)
 * leaves no replica file bound to its URL before anything is known of it. Returns false when the
 * signal came first.
 */
async function awaitSource(source: FeedSource, feed: string, signal: AbortSignal, log: Logger): Promise<boolean> {
  const backoff = new Backoff({ baseMs: 500, capMs: 10_000 })
  while (!signal.aborted) {
    try {
      await source.info(feed, signal)
      return true
    } catch (error) {
      if (signal.aborted) break
      if (isTidemarkError(error) && FATAL_AT_START.has(error.code)) throw error
      log.warn({ err: asTidemarkError(error).message }, 'the feed server does not answer yet: nothing is created until it does')
      await backoff.wait(signal).catch(() => undefined)
    }
  }
  return false
}

/** `--nats` / `--amqp`: the broker transport with long-poll behind it; none: long-poll alone. */
async function brokerTransportFor(options: ReplicateOptions, source: FeedSource, replica: string, logger: Logger): Promise<ChangeTransport | undefined> {
  if (options.nats !== undefined && options.amqp !== undefined) throw new BadRequestError('give one broker: --nats or --amqp, not both')
  const url = options.nats ?? options.amqp
  if (url === undefined) return undefined
  const { brokerKind, brokerTransport } = await import('../../transport/broker/broker-choice.js')
  return brokerTransport({ kind: brokerKind(url), url }, source, { replica, logger })
}
