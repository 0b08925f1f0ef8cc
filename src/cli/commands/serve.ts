import { isIP } from 'node:net'
import { BadRequestError } from '../../errors.js'
import { readFileSync } from 'node:fs'
import type { FeedServer, TlsFiles } from '../../server/feed-server.js'
import { DEFAULT_SERVER_LIMITS, serverLimits, type ServerLimits } from '../../server/server-limits.js'
import type { Logger, SourceStore } from '../../store/store.js'
import type { RunningRelays } from '../../relay/relay-feeds.js'
import type { Registrar } from '../cli.js'
import { collect, durationOption, examples, parseDurationOption, parsePort } from '../options.js'
import { stopSignal } from '../stop-signal.js'
import { tokensFrom } from '../token-auth.js'

interface ServeOptions {
  host: string
  port: number
  token?: string[]
  insecureNoAuth?: boolean
  limit?: string[]
  tlsCert?: string
  tlsKey?: string
  maintainEvery?: number
  relayNats?: string
  relayAmqp?: string
  relayScanEvery?: number
}

/** `tidemark serve <db>`: the HTTP feed server over a source store, until SIGINT or SIGTERM. */
export const registerServe: Registrar = (program, cli) => {
  program
    .command('serve')
    .description('serve the feeds of a source over HTTP (changes, long-poll, snapshots, digests, dashboard)')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', parsePort, 7480)
    .option(
      '--token <token>',
      'the simple case: accept this bearer token as an admin token over every feed (repeatable; default: $TIDEMARK_TOKENS, comma-separated). Scoped tokens: `tidemark token create`. Neither: no auth, on 127.0.0.1 only',
      collect,
    )
    .option('--insecure-no-auth', 'serve without tokens on an address other computers can reach (anyone who reaches it reads every feed)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (chain), PEM; with --tls-key. SIGHUP reloads both without dropping connections')
    .option('--tls-key <file>', "the certificate's private key, PEM")
    .option('--limit <name=value>', `set one of the server's limits (repeatable): ${Object.keys(DEFAULT_SERVER_LIMITS).join(', ')} (ms, bytes or counts; see docs/security.md)`, collect)
    .option(
      '--maintain-every <duration>',
      "how often to update digests, apply retention and check for a restore (default: the server's; 0: never)",
      (value: string) => (value.trim() === '0' ? 0 : parseDurationOption(value)),
    )
    .option('--relay-nats <url>', "also relay every feed to NATS JetStream, as `tidemark relay` does (docs/brokers.md)")
    .option('--relay-amqp <url>', 'also relay every feed to RabbitMQ, as `tidemark relay` does')
    .addOption(durationOption('--relay-scan-every <duration>', 'with --relay-*: how often to look for feeds created since, to relay them too', 5000))
    .addHelpText(
      'after',
      `
Prints "tidemark serving <db> at <url>" on stderr once listening; logs are JSON lines on stderr.
SIGINT or SIGTERM closes the server and the store, then exits 0.
${examples([
  'tidemark serve shop.db',
  'tidemark serve shop.db --host 0.0.0.0 --port 8080 --token "$READER_TOKEN" --token "$ADMIN_TOKEN"',
  'tidemark serve shop.db --host 10.0.0.5 --insecure-no-auth   # a trusted network only',
  'tidemark serve shop.db --limit exports=4 --limit requestTimeoutMs=10000',
  'TIDEMARK_TOKENS=t1,t2 tidemark serve shop.db',
  'curl -H "Authorization: Bearer $READER_TOKEN" http://127.0.0.1:7480/v1/feeds',
])}`,
    )
    .action(async (db: string, options: ServeOptions) => {
      const stop = stopSignal(cli.note.bind(cli))
      const log = cli.logger('serve')
      let store: SourceStore | undefined
      let server: FeedServer | undefined
      let relays: RunningRelays | undefined
      let onHangup: (() => void) | undefined
      try {
        store = await cli.openStore(db)
        // Loaded when serve runs, so that the other commands do not pay for loading fastify.
        const { createFeedServer } = await import('../../server/feed-server.js')
        const { tokenAuthorizer } = await import('../../server/tokens.js')
        // The store's tokens (`tidemark token create`) and --token's admin tokens, if any of either.
        const adminTokens = tokensFrom(options.token, process.env.TIDEMARK_TOKENS)
        const authorize = await tokenAuthorizer(store.tokens, { adminTokens, logger: cli.logger('auth') })
        if (!authorize && !options.insecureNoAuth && !isLoopback(options.host)) {
          throw new BadRequestError(
            `refusing to serve ${options.host} without tokens: anyone who can reach that address could read, export and verify every feed. ` +
              'Give --token (or TIDEMARK_TOKENS) or create tokens with `tidemark token create`, listen on 127.0.0.1, or pass --insecure-no-auth if the network itself is trusted',
          )
        }
        const tls = tlsFiles(options)
        server = await createFeedServer({
          store,
          limits: limitsFrom(options.limit ?? []),
          ...(tls ? { tls } : {}),
          logger: cli.logger('server'),
          ...(authorize ? { authorize } : {}),
          ...(options.maintainEvery !== undefined ? { maintainEveryMs: options.maintainEvery } : {}),
        })
        const { url } = await server.listen({ host: options.host, port: options.port }).catch((error: unknown) => {
          throw listenError(error, options)
        })
        if (!authorize && !isLoopback(options.host)) log.warn({}, `--insecure-no-auth: anyone who can reach ${url} can read every feed`)
        else if (!authorize) log.warn({}, 'no --token given and no tokens in the store: every process on this machine can read every feed')
        if (tls) {
          const running = server
          // New connections get the new certificate; open ones (long-polls) keep theirs.
          onHangup = () => {
            try {
              running.reloadTls(tlsFiles(options) as TlsFiles)
              log.info({}, `reloaded the TLS certificate from ${options.tlsCert}`)
            } catch (error) {
              log.error({ err: (error as Error).message }, `SIGHUP: kept the old TLS certificate: ${(error as Error).message}`)
            }
          }
          process.on('SIGHUP', onHangup)
        }
        cli.note(`tidemark serving ${store.location} at ${url}`)
        relays = await startEmbeddedRelays(store, options, cli.logger('relay'))
        const signal = await stop.signalled
        log.info({ signal }, 'stopping')
      } finally {
        if (onHangup) process.off('SIGHUP', onHangup)
        stop.dispose()
        await relays?.stop()
        try {
          await server?.close()
        } finally {
          await store?.close()
        }
      }
      // If anything still holds the event loop open after a clean close, do not hang on it.
      setTimeout(() => process.exit(), 3000).unref()
    })
}

/** `--relay-nats` / `--relay-amqp`: every feed of the store, relayed from this process — those created later too. */
async function startEmbeddedRelays(store: SourceStore, options: ServeOptions, logger: Logger): Promise<RunningRelays | undefined> {
  if (options.relayNats !== undefined && options.relayAmqp !== undefined) throw new BadRequestError('relay to one broker: --relay-nats or --relay-amqp')
  const url = options.relayNats ?? options.relayAmqp
  if (url === undefined) return undefined
  const [{ relayFeeds }, { brokerKind }, { LocalFeedSource }] = await Promise.all([
    import('../../relay/relay-feeds.js'),
    import('../../transport/broker/broker-choice.js'),
    import('../../transport/local-feed-source.js'),
  ])
  const list = async (): Promise<string[]> => (await store.listFeeds()).map((f) => f.name)
  const running = await relayFeeds({
    source: new LocalFeedSource(store),
    feeds: await list(),
    broker: { kind: brokerKind(url), url },
    logger,
    discover: { feeds: list, ...(options.relayScanEvery !== undefined ? { everyMs: options.relayScanEvery } : {}) },
  })
  running.done.catch((error: unknown) => logger.error({ err: (error as Error).message }, `a relay stopped: ${(error as Error).message}`))
  return running
}

/** `--tls-cert` and `--tls-key`, read (both or neither). */
function tlsFiles(options: ServeOptions): TlsFiles | undefined {
  if (options.tlsCert === undefined && options.tlsKey === undefined) return undefined
  if (options.tlsCert === undefined || options.tlsKey === undefined) throw new BadRequestError('give --tls-cert and --tls-key together: the certificate and its private key')
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (error) {
      throw new BadRequestError(`cannot read the TLS ${what} ${file}: ${(error as Error).message}`, { cause: error })
    }
  }
  return { cert: read(options.tlsCert, 'certificate'), key: read(options.tlsKey, 'key') }
}

/** `--limit name=value`, each a positive whole number; the server checks the values against each other. */
export function limitsFrom(given: string[]): Partial<ServerLimits> {
  const limits: Partial<ServerLimits> = {}
  for (const item of given) {
    const match = /^([A-Za-z]+)=(\d{1,15})$/.exec(item.trim())
    const name = match?.[1] as keyof ServerLimits | undefined
    if (!match || name === undefined || !(name in DEFAULT_SERVER_LIMITS)) {
      throw new BadRequestError(`--limit ${JSON.stringify(item)}: give name=value with a whole number, the name one of ${Object.keys(DEFAULT_SERVER_LIMITS).join(', ')}`)
    }
    limits[name] = Number(match[2])
  }
  return serverLimits(limits)
}

/** Whether `host` is reachable from this machine only: 127.0.0.0/8, ::1 (also IPv4-mapped), `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return isIP(v4) === 4 && v4.startsWith('127.')
}

/** The operator's mistakes when listening, said as such (exit 64, usage) rather than as an unexpected error. */
function listenError(error: unknown, options: ServeOptions): unknown {
  const code = (error as { code?: string }).code
  const where = `${options.host}:${options.port}`
  if (code === 'EADDRINUSE') return new BadRequestError(`${where} is already in use: choose another --port (0 picks a free one)`, { cause: error })
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
    return new BadRequestError(`cannot listen on ${where}: no such address on this machine (check --host)`, { cause: error })
  }
  if (code === 'EACCES') return new BadRequestError(`not allowed to listen on ${where}: ports below 1024 need privileges`, { cause: error })
  return error
}
