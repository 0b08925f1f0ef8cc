/**
 * The replica's side of protocol v1 (docs/protocol.md): a FeedSource that asks a feed server over
 * HTTP. Listings are read as they stream in, line by line; changes and rows keep their data as the
 * server sent it (see wire-lines.ts). Everything that comes back is checked: a wrong, cut or
 * garbled answer is a ProtocolError, a network failure, a timeout or a 5xx is `store-unavailable`,
 * and both mean "retry with backoff" to a replica. An AbortSignal stops a request at once.
 */
import { Agent, request, type Dispatcher } from 'undici'
import { BadRequestError, EpochChangedError, NotAFeedServerError, ProtocolError, TidemarkError } from '../../errors.js'
import type { StoredRow } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import { PROTOCOL_VERSION, type FeedInfo, type Seq } from '../../protocol/types.js'
import { EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE, PROTOCOL_HEADER, SNAPSHOT_DONE_HEADER, SNAPSHOT_LAST_HEADER } from '../../server/http-protocol.js'
import { checkBuckets, checkDigestRequest } from '../../protocol/digest-wire.js'
import type { BucketList } from '../../protocol/types.js'
import { snapshotOneAhead } from '../feed-source.js'
import type {
  ChangesPage,
  ChangesRequest,
  DigestPage,
  DigestRequest,
  FeedSource,
  KeysListing,
  KeysRequest,
  RowsPage,
  SnapshotPage,
  SnapshotRequest,
  Traffic,
} from '../feed-source.js'
import { decodeDigestPage, KeysListingReader } from './digest-readers.js'
import { TrafficCounter } from './traffic-counter.js'
import { LineSplitter } from './line-splitter.js'
import { prefetchSnapshot } from './snapshot-prefetch.js'
import { ChangesPageReader, SnapshotPageReader, type PageReader } from './page-readers.js'
import { errorFromBody, errorFromResponse, networkError, type ExchangeContext } from './response-errors.js'
import { decodeRowsDocument, excerpt, isSeq, parseLine } from './wire-lines.js'

/** JSON answers may carry a charset: only the media type is compared. */
const JSON_TYPE = 'application/json'

/**
 * The longest line of a `keys` listing: one bucket's whole list of `(key, seq, hash)` entries, which
 * the protocol does not bound (a feed of a billion keys has ~15,000 per bucket); a runaway body
 * still stops here. Changes and snapshot lines are bounded by the protocol (LIMITS.lineBytes).
 */
const MAX_KEYS_LINE_BYTES = 64 * 1024 * 1024
/** The most of an error body (or a wrong answer) read to build a message. */
const MAX_ERROR_BYTES = 64 * 1024
/** A feed's description is a few hundred bytes; more is not one. */
const MAX_INFO_BYTES = 1024 * 1024
/** The largest digest answer: 4096 nodes of 16 children at ~35 bytes each is ~2.5 MB. */
const MAX_DIGEST_BYTES = 8 * 1024 * 1024

export interface HttpFeedSourceOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string
  /**
   * How long to wait for an answer's headers, beyond the requested long-poll wait, and the longest
   * silence mid-body, in ms (default 30 000).
   */
  timeoutMs?: number
  /** Most connections open to the server at once (default: no bound; each long-poll holds one). */
  connections?: number
  /**
   * The most of one changes or snapshot listing held in memory, in bytes (default 64 MiB). Past it
   * the client stops reading and uses what it has whole (transactions, rows), then asks again from
   * there; a single transaction of more than four times this is refused (ProtocolError).
   */
  maxPageBytes?: number
  /**
   * For https:// servers: the certificate authorities to trust (PEM), instead of the system's. The
   * server's certificate is always verified, its name included; there is no switch to turn that off.
   */
  ca?: string | Buffer
}

export class HttpFeedSource implements FeedSource {
  /** The server's base URL, without credentials, query or fragment. */
  readonly description: string
  private readonly base: string
  private readonly token: string | undefined
  private readonly timeoutMs: number
  private readonly maxPageBytes: number
  private readonly agent: Agent
  private readonly inflight = new Set<AbortController>()
  private readonly counter = new TrafficCounter()
  private closed = false
  /** What a snapshot prefetcher's thread needs to build the same client (snapshotPages). */
  private readonly settings: { url: string; options: HttpFeedSourceOptions }

  constructor(url: string, options: HttpFeedSourceOptions = {}) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new BadRequestError(`not a URL: ${JSON.stringify(url)} (a feed server's address is like http://host:7480)`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new BadRequestError(`a feed server's URL starts with http:// or https://, not ${parsed.protocol}//`)
    }
    const path = parsed.pathname.replace(/\/+$/, '')
    this.description = `${parsed.origin}${path}`
    if (parsed.username !== '' || parsed.password !== '' || parsed.search !== '') {
      // Refused rather than silently dropped or sent along: a token belongs in options.token.
      throw new BadRequestError(`the feed server URL ${this.description} carries credentials or a query: give the token as a bearer token (--token / options.token) instead`)
    }
    this.base = this.description
    if (options.token !== undefined && (options.token.trim() === '' || /[\s\x00-\x1f\x7f]/.test(options.token))) {
      // An empty token is a variable that was not set; one with spaces cannot be sent as a bearer token.
      throw new BadRequestError(options.token.trim() === '' ? 'the token is empty: give the feed server\'s bearer token, or none' : 'the token contains a space or a control character: it cannot be sent as "Authorization: Bearer <token>"')
    }
    this.token = options.token
    this.timeoutMs = options.timeoutMs ?? 30_000
    if (!(this.timeoutMs > 0)) throw new BadRequestError(`timeoutMs must be positive, got ${this.timeoutMs}`)
    this.maxPageBytes = options.maxPageBytes ?? 64 * 1024 * 1024
    if (!(Number.isSafeInteger(this.maxPageBytes) && this.maxPageBytes > 0)) throw new BadRequestError(`maxPageBytes must be a positive whole number, got ${this.maxPageBytes}`)
    const connections = options.connections
    if (connections !== undefined && !(Number.isSafeInteger(connections) && connections > 0)) {
      throw new BadRequestError(`connections must be a positive whole number, got ${connections}`)
    }
    this.settings = { url, options: { ...options } }
    this.agent = new Agent({
      connections: connections ?? null,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: this.counter.connector(options.ca === undefined ? {} : { ca: options.ca }),
    })
  }

  /** Aborts the requests under way and closes the connections. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const reason = this.closedError()
    for (const c of this.inflight) c.abort(reason)
    await this.agent.close()
  }

  async info(feed: string, signal?: AbortSignal): Promise<FeedInfo> {
    const path = feedPath(feed)
    return this.exchange({ method: 'GET', path, feed, accept: JSON_TYPE, signal }, async (res, ctx) => {
      const body = parseLine(await readText(res.body, MAX_INFO_BYTES))
      return checkFeedInfo(body, feed, ctx)
    })
  }

  async changes(feed: string, req: ChangesRequest): Promise<ChangesPage> {
    if (!isSeq(req.after)) throw new BadRequestError(`after must be a seq (a whole number ≥ 0), got ${req.after}`)
    const query = new URLSearchParams({ after: String(req.after) })
    if (req.limit !== undefined) query.set('limit', String(req.limit))
    const waitMs = Math.min(Math.max(0, req.waitMs ?? 0), LIMITS.waitMaxMs)
    if (waitMs > 0) query.set('wait', String(waitMs))
    if (req.epoch !== undefined) query.set('epoch', req.epoch)
    const path = `${feedPath(feed)}/changes?${query}`
    return this.exchange(
      { method: 'GET', path, feed, accept: NDJSON_TYPE, signal: req.signal, waitMs, after: req.after, epoch: req.epoch },
      async (res, ctx) => {
        const epoch = this.listingEpoch(res, ctx, req.epoch)
        const reader = new ChangesPageReader(feed, req.after, epoch, (body) => errorFromBody(body, undefined, ctx))
        return readListing(res, reader, ctx, this.maxPageBytes)
      },
    )
  }

  /**
   * One chunk. `onAhead` is told, as soon as the answer's headers arrive, where the server says the
   * chunk ends (its `tidemark-snapshot-last` / `-done` hint; not called without it): a prefetcher
   * may ask for the next chunk then. Only a hint — the page returned is what the body held.
   */
  async snapshot(feed: string, req: SnapshotRequest, onAhead?: (ahead: { last: string; done: boolean }) => void): Promise<SnapshotPage> {
    const after = req.after === '' ? null : req.after
    const query = new URLSearchParams()
    if (after !== null) query.set('after', after)
    if (req.limit !== undefined) query.set('limit', String(req.limit))
    if (req.epoch !== undefined) query.set('epoch', req.epoch)
    const qs = query.size > 0 ? `?${query}` : ''
    const path = `${feedPath(feed)}/snapshot${qs}`
    return this.exchange({ method: 'GET', path, feed, accept: NDJSON_TYPE, signal: req.signal, epoch: req.epoch }, async (res, ctx) => {
      const epoch = this.listingEpoch(res, ctx, req.epoch)
      const head = Number(header(res, HEAD_HEADER))
      if (onAhead) {
        const last = header(res, SNAPSHOT_LAST_HEADER)
        const done = header(res, SNAPSHOT_DONE_HEADER)
        if (last !== undefined && (done === 'true' || done === 'false')) {
          let key: string | undefined
          try {
            key = decodeURIComponent(last)
          } catch {
            key = undefined // a garbled hint is no hint
          }
          if (key !== undefined && key !== '') onAhead({ last: key, done: done === 'true' })
        }
      }
      const reader = new SnapshotPageReader(feed, after, req.limit, epoch, (body) => errorFromBody(body, undefined, ctx), isSeq(head) ? head : undefined)
      return readListing(res, reader, ctx, this.maxPageBytes)
    })
  }

  /**
   * The snapshot from `request.after` on, page by page: a bootstrap of more than a few chunks
   * (`expectedRows`, when known) is fetched, checked and hashed ahead on a thread of its own
   * (snapshot-prefetch.ts), so that the replica's thread only writes; a small one is fetched here,
   * one chunk ahead.
   */
  snapshotPages(feed: string, request: SnapshotRequest & { expectedRows?: number }): AsyncIterable<SnapshotPage> {
    const limit = request.limit ?? LIMITS.snapshotDefault
    const { expectedRows, ...req } = request
    if (this.closed) throw this.closedError()
    if (expectedRows !== undefined && expectedRows <= 2 * limit) return snapshotOneAhead(this, feed, req)
    return prefetchSnapshot(this.settings.url, this.settings.options, feed, req)
  }

  /**
   * The current versions of `keys` (tombstones included, unknown keys left out), read at one
   * position. The answer is one JSON document, so it is held whole: ask for keys in batches.
   */
  async rows(feed: string, keys: string[], signal?: AbortSignal): Promise<RowsPage> {
    if (keys.length > LIMITS.rowsMax) throw new BadRequestError(`ask for at most ${LIMITS.rowsMax} keys at a time, not ${keys.length}`)
    for (const key of keys) {
      if (typeof key !== 'string' || key === '') throw new BadRequestError(`a key must be a non-empty string, got ${JSON.stringify(key)}`)
    }
    if (keys.length === 0) {
      // The protocol refuses an empty request; the answer is known without one.
      const info = await this.info(feed, signal)
      return { epoch: info.epoch, head: info.head, rows: [] }
    }
    const path = `${feedPath(feed)}/rows`
    const body = JSON.stringify({ keys })
    return this.exchange({ method: 'POST', path, feed, accept: JSON_TYPE, signal, body }, async (res, ctx) => {
      // Each row is at most a listing line's size: a larger answer is not one to these keys.
      const max = keys.length * LIMITS.lineBytes + 1024
      const doc = decodeRowsDocument(await readWhole(res.body, max, ctx))
      if (doc.epoch === '' || !isSeq(doc.head)) throw new ProtocolError(`${ctx.what} answered epoch ${excerpt(doc.epoch)} and head ${doc.head}`)
      const asked = new Set(keys)
      const seen = new Set<string>()
      for (const row of doc.rows) {
        if (!asked.has(row.key)) throw new ProtocolError(`${ctx.what} answered key ${excerpt(row.key, 80)}, which was not asked for`)
        if (seen.has(row.key)) throw new ProtocolError(`${ctx.what} answered key ${excerpt(row.key, 80)} twice`)
        if (row.seq > doc.head) throw new ProtocolError(`${ctx.what} answered key ${excerpt(row.key, 80)} at seq ${row.seq}, above its head ${doc.head}`)
        seen.add(row.key)
      }
      return { epoch: doc.epoch, head: doc.head, rows: doc.rows as StoredRow[] }
    })
  }

  /**
   * The digest tree nodes' children, one level, read at one position. GET for up to 64 nodes (a
   * bare GET for the root: the one small request an intact replica needs), POST beyond. The answer
   * is checked through and through: nodes as asked, children that add up to their parent.
   */
  async digest(feed: string, req: DigestRequest): Promise<DigestPage> {
    const { level, nodes } = checkDigestRequest(req.level, req.nodes, LIMITS.digestNodesMax)
    const query = new URLSearchParams()
    if (req.epoch !== undefined) query.set('epoch', req.epoch)
    let path = `${feedPath(feed)}/digest`
    let body: string | undefined
    if (nodes.length <= LIMITS.digestNodesGet) {
      // Digits and commas need no escaping in a query.
      if (level !== 0 || nodes[0] !== 0) path += `?level=${level}&nodes=${nodes.join(',')}`
    } else {
      body = JSON.stringify({ level, nodes })
    }
    if (query.size > 0) path += `${path.includes('?') ? '&' : '?'}${query}`
    const method = body === undefined ? 'GET' : 'POST'
    return this.exchange({ method, path, feed, accept: JSON_TYPE, signal: req.signal, epoch: req.epoch, body }, async (res, ctx) => {
      const text = await readText(res.body, MAX_DIGEST_BYTES)
      try {
        return decodeDigestPage(text, { feed, level, nodes, epoch: req.epoch })
      } catch (error) {
        throw where(error, ctx)
      }
    })
  }

  /**
   * The `(key, seq, hash)` lists of leaf buckets. Returns once the first line has come; the lists
   * are read as the body streams in (iterate them to the end, or break: either releases the
   * connection). Every list is checked as it comes (see KeysListingReader); a cut listing throws
   * ProtocolError from the iteration.
   */
  async keys(feed: string, req: KeysRequest): Promise<KeysListing> {
    const buckets = checkBuckets(req.buckets)
    const query = req.epoch === undefined ? '' : `?${new URLSearchParams({ epoch: req.epoch })}`
    const spec: RequestSpec = {
      method: 'POST',
      path: `${feedPath(feed)}/keys${query}`,
      feed,
      accept: NDJSON_TYPE,
      signal: req.signal,
      epoch: req.epoch,
      body: JSON.stringify({ buckets }),
    }
    const call = await this.open(spec)
    const lines = bodyLines(call.res.body)
    let reader: KeysListingReader
    try {
      const epoch = this.listingEpoch(call.res, call.ctx, req.epoch)
      reader = new KeysListingReader(feed, buckets, epoch, (body) => errorFromBody(body, undefined, call.ctx))
      const first = await lines.next()
      if (first.done) reader.finish(first.value)
      else reader.head(first.value)
    } catch (error) {
      call.close()
      throw this.failure(where(error, call.ctx), call)
    }
    const failure = (error: unknown): unknown => this.failure(where(error, call.ctx), call)
    // Runs only once iterated, after `listing` exists.
    async function* lists(): AsyncGenerator<BucketList> {
      try {
        for (;;) {
          const next = await lines.next()
          if (next.done) {
            reader.finish(next.value)
            listing.minSeq = reader.minSeq
            return
          }
          const list = reader.line(next.value)
          if (list !== undefined) yield list
        }
      } catch (error) {
        throw failure(error)
      } finally {
        call.close()
      }
    }
    const listing: KeysListing = { epoch: reader.epoch, seq: reader.seq, minSeq: reader.minSeq, lists: lists() }
    return listing
  }

  /** Requests made and bytes on the wire both ways (request and status lines, headers, bodies) so far. */
  traffic(): Traffic {
    return { requests: this.counter.requests, bytesSent: this.counter.sent(), bytesReceived: this.counter.received() }
  }

  /**
   * One request: sends it, checks the status and the protocol header, and runs `handle` over a 200
   * response within the same deadline and abort scope. Maps failures onto tidemark's errors.
   */
  private async exchange<T>(spec: RequestSpec, handle: (res: Dispatcher.ResponseData, ctx: ExchangeContext) => Promise<T>): Promise<T> {
    const call = await this.open(spec)
    try {
      return await handle(call.res, call.ctx)
    } catch (error) {
      throw this.failure(error, call)
    } finally {
      call.close()
    }
  }

  /**
   * Sends a request and checks its status, protocol header and content type. The caller reads the
   * body and must call `close()` (which drops a body left unread with its connection).
   */
  private async open(spec: RequestSpec): Promise<OpenCall> {
    const ctx: ExchangeContext = { source: this.description, what: `${spec.method} ${spec.path.split('?', 1)[0]}`, feed: spec.feed }
    if (spec.after !== undefined) ctx.after = spec.after
    if (spec.epoch !== undefined) ctx.epoch = spec.epoch
    if (this.closed) throw this.closedError()
    spec.signal?.throwIfAborted()

    const controller = new AbortController()
    const onAbort = (): void => controller.abort(spec.signal?.reason)
    spec.signal?.addEventListener('abort', onAbort, { once: true })
    this.inflight.add(controller)
    const headers: Record<string, string> = { accept: spec.accept }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    if (spec.body !== undefined) headers['content-type'] = 'application/json'
    const headersTimeout = this.timeoutMs + (spec.waitMs ?? 0)
    let res: Dispatcher.ResponseData | undefined
    const close = (): void => {
      spec.signal?.removeEventListener('abort', onAbort)
      this.inflight.delete(controller)
      // A body left unread (a refusal, an error mid-listing, a listing left early) is dropped with its connection.
      if (res && !res.body.destroyed) res.body.destroy()
    }
    this.counter.requests++
    try {
      res = await request(`${this.base}${spec.path}`, {
        dispatcher: this.agent,
        method: spec.method,
        headers,
        ...(spec.body !== undefined ? { body: spec.body } : {}),
        signal: controller.signal,
        headersTimeout,
        bodyTimeout: this.timeoutMs,
      })
      // Errors of the body reach whoever reads it; one that nobody reads (an abort in between) must not crash the process.
      res.body.on('error', () => {})
      await this.checkResponse(res, spec.accept, ctx)
      return { res, ctx, controller, close, bodyStarted: true }
    } catch (error) {
      close()
      throw this.failure(error, { ctx, controller, bodyStarted: res !== undefined }, res === undefined ? headersTimeout : this.timeoutMs)
    }
  }

  /** What a failure of a request means: the abort's reason, tidemark's own error, or a network failure. */
  private failure(error: unknown, call: Pick<OpenCall, 'ctx' | 'controller' | 'bodyStarted'>, timeoutMs = this.timeoutMs): unknown {
    if (call.controller.signal.aborted) return call.controller.signal.reason
    if (error instanceof TidemarkError) return error
    return networkError(error, call.ctx, call.bodyStarted, timeoutMs)
  }

  /** Throws unless this is a 200 from a server speaking protocol v1 with the expected content type. */
  private async checkResponse(res: Dispatcher.ResponseData, accept: string, ctx: ExchangeContext): Promise<void> {
    const status = res.statusCode
    const protocol = header(res, PROTOCOL_HEADER)
    if (status >= 500 && protocol === undefined) {
      // A proxy or load balancer in front of the server: the server is away.
      throw errorFromResponse(status, await readText(res.body, MAX_ERROR_BYTES), ctx)
    }
    if (protocol !== String(PROTOCOL_VERSION)) {
      const text = await readText(res.body, 200)
      if (protocol === undefined) {
        throw new NotAFeedServerError(
          `${ctx.what} on ${ctx.source} answered ${status} without a ${PROTOCOL_HEADER} header: is this a tidemark feed server? (body: ${excerpt(text)})`,
          { details: { status } },
        )
      }
      throw new ProtocolError(`${ctx.source} speaks tidemark protocol ${excerpt(protocol)}; this replica speaks ${PROTOCOL_VERSION}: upgrade the older side`, {
        details: { status },
      })
    }
    if (status !== 200) throw errorFromResponse(status, await readText(res.body, MAX_ERROR_BYTES), ctx)
    const type = header(res, 'content-type') ?? ''
    if (!type.toLowerCase().startsWith(accept)) {
      const text = await readText(res.body, 200)
      throw new ProtocolError(`${ctx.what} on ${ctx.source} answered ${excerpt(type || '(no content type)')} where ${accept} was due: ${excerpt(text)}`)
    }
  }

  /** A listing's epoch from its header; EpochChangedError if the server went on with another one than asked for. */
  private listingEpoch(res: Dispatcher.ResponseData, ctx: ExchangeContext, expected: string | undefined): string {
    const epoch = header(res, EPOCH_HEADER)
    if (epoch === undefined || epoch === '') throw new ProtocolError(`${ctx.what} on ${ctx.source} answered without a ${EPOCH_HEADER} header`)
    if (expected !== undefined && epoch !== expected) throw new EpochChangedError(ctx.feed, expected, epoch)
    return epoch
  }

  private closedError(): TidemarkError {
    return new TidemarkError('store-unavailable', `the connection pool to ${this.description} is closed`)
  }
}

interface RequestSpec {
  method: 'GET' | 'POST'
  path: string
  feed: string
  accept: string
  signal: AbortSignal | undefined
  waitMs?: number
  after?: Seq
  epoch?: string | undefined
  body?: string | undefined
}

/** A request whose response head has been checked; its body is the caller's to read, then `close()`. */
interface OpenCall {
  res: Dispatcher.ResponseData
  ctx: ExchangeContext
  controller: AbortController
  /** Whether the response had begun (for the message of a network failure). */
  bodyStarted: boolean
  close(): void
}

/**
 * A body's lines as they arrive (LineSplitter); the return value is the bytes of a line begun but
 * not ended when the body ended (non-zero: cut mid-line).
 */
async function* bodyLines(body: Dispatcher.ResponseData['body']): AsyncGenerator<string, number> {
  const splitter = new LineSplitter(MAX_KEYS_LINE_BYTES)
  const ready: string[] = []
  const onLine = (line: string): void => {
    ready.push(line)
  }
  for await (const chunk of body) {
    splitter.push(chunk as Buffer, onLine)
    for (const line of ready) yield line
    ready.length = 0
  }
  return splitter.partialBytes
}

/** A ProtocolError from reading an answer, saying which request it was. */
function where(error: unknown, ctx: ExchangeContext): unknown {
  if (!(error instanceof ProtocolError)) return error
  return new ProtocolError(`${ctx.what} on ${ctx.source}: ${error.message}`, { cause: error, details: error.details })
}

function feedPath(feed: string): string {
  return `/v1/feeds/${encodeURIComponent(feed)}`
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * Streams a listing's body through the line splitter into the page reader. Past `maxBytes` it stops
 * reading (the connection is dropped) and returns what is whole so far; past four times that with
 * nothing whole to return, it refuses the listing.
 */
async function readListing<Page>(res: Dispatcher.ResponseData, reader: PageReader<Page>, ctx: ExchangeContext, maxBytes: number): Promise<Page> {
  // A line over the protocol's bound is refused as it arrives, not once it has all come.
  const splitter = new LineSplitter(LIMITS.lineBytes)
  const onLine = (line: string): void => reader.line(line)
  let bytes = 0
  try {
    for await (const chunk of res.body) {
      splitter.push(chunk as Buffer, onLine)
      bytes += (chunk as Buffer).length
      if (bytes > maxBytes && !reader.complete) {
        const page = reader.cut()
        if (page !== undefined) return page
        if (bytes > 4 * maxBytes) {
          throw new ProtocolError(`the listing passed ${4 * maxBytes} bytes with no whole transaction in it: nothing of it is used (raise maxPageBytes if one transaction of the source is really this large)`)
        }
      }
    }
  } catch (error) {
    throw where(error, ctx)
  }
  try {
    return reader.finish(splitter.partialBytes)
  } catch (error) {
    throw where(error, ctx)
  }
}

/** Reads a whole body as UTF-8 text; ProtocolError as soon as it passes `max` bytes (the rest is not read). */
async function readWhole(body: Dispatcher.ResponseData['body'], max: number, ctx: ExchangeContext): Promise<string> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of body) {
    const buf = chunk as Buffer
    bytes += buf.length
    if (bytes > max) throw new ProtocolError(`${ctx.what} on ${ctx.source} answered more than ${max} bytes, more than the protocol allows for what was asked: nothing of it is used`)
    chunks.push(buf)
  }
  return Buffer.concat(chunks, bytes).toString('utf8')
}

/** Reads a body as UTF-8 text, up to `max` bytes (the rest is dropped). */
async function readText(body: Dispatcher.ResponseData['body'], max: number): Promise<string> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of body) {
    const buf = chunk as Buffer
    chunks.push(buf)
    bytes += buf.length
    if (bytes >= max) break
  }
  const all = Buffer.concat(chunks, bytes)
  return all.toString('utf8', 0, Math.min(bytes, max))
}

function checkFeedInfo(body: Record<string, unknown>, feed: string, ctx: ExchangeContext): FeedInfo {
  const { name, epoch, head, minSeq, keys, digestSeq, retention } = body
  const wrong = (what: string): ProtocolError => new ProtocolError(`${ctx.what} on ${ctx.source} answered a feed with ${what}: ${excerpt(JSON.stringify(body))}`)
  if (name !== feed) throw wrong(`name ${JSON.stringify(name)}`)
  if (typeof epoch !== 'string' || epoch === '') throw wrong('no epoch')
  if (!isSeq(head)) throw wrong('no head')
  if (!isSeq(minSeq) || minSeq < 1 || minSeq > head + 1) throw wrong(`minSeq ${String(minSeq)}`)
  if (!isSeq(keys)) throw wrong('no key count')
  if (!isSeq(digestSeq) || digestSeq > head) throw wrong(`digestSeq ${String(digestSeq)}`)
  if (typeof retention !== 'object' || retention === null || Array.isArray(retention)) throw wrong('no retention')
  return body as unknown as FeedInfo
}
