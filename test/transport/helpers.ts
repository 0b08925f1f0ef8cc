import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after } from 'node:test'
import { createFeedServer, type FeedServer } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { HttpFeedSource, type HttpFeedSourceOptions } from '../../src/transport/http/http-feed-source.js'
import { tmpDb } from '../helpers/tmp.js'

export interface RealServer {
  store: SqliteSourceStore
  server: FeedServer
  url: string
  /** An HttpFeedSource to this server, closed (before the server) when the test file ends. */
  connect(options?: HttpFeedSourceOptions): HttpFeedSource
}

/**
 * A SQLite source in a temp folder and the real feed server over it on 127.0.0.1, closed when the
 * file ends. Clients are closed first: the server's close waits for their keep-alive connections.
 */
export async function realServer(options: { authorize?: Parameters<typeof createFeedServer>[0]['authorize'] } = {}): Promise<RealServer> {
  const store = SqliteSourceStore.open(tmpDb())
  const server = await createFeedServer({ store, maintainEveryMs: 0, ...options })
  const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
  const sources: HttpFeedSource[] = []
  after(async () => {
    for (const s of sources) await s.close()
    await server.close()
    await store.close()
  })
  return {
    store,
    server,
    url,
    connect(connectOptions = {}) {
      const source = new HttpFeedSource(url, connectOptions)
      sources.push(source)
      return source
    },
  }
}

/** An HttpFeedSource closed when the test file ends. */
export function httpSource(url: string, options: HttpFeedSourceOptions = {}): HttpFeedSource {
  const source = new HttpFeedSource(url, options)
  after(() => source.close())
  return source
}

export interface FakeServer {
  url: string
  /** Requests seen, as `METHOD /path?query`. */
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }>
  close(): Promise<void>
}

/**
 * A scripted HTTP server for what a real feed server cannot be made to do (cut a body, send garbage,
 * never answer). The handler gets each request with its body read. Every socket is destroyed on close.
 */
export async function fakeServer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<FakeServer> {
  const sockets = new Set<Socket>()
  const requests: FakeServer['requests'] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      handler(req, res, body)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  let closed: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closed ??= new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    }))
  after(close)
  return { url: `http://127.0.0.1:${port}`, requests, close }
}

/** Writes a v1 response head: the protocol header, a content type and, for listings, the epoch. */
export function v1Head(res: ServerResponse, status: number, type: 'ndjson' | 'json', epoch?: string): void {
  const headers: Record<string, string> = {
    'tidemark-protocol': '1',
    'content-type': type === 'ndjson' ? 'application/x-ndjson' : 'application/json; charset=utf-8',
  }
  if (epoch !== undefined) headers['tidemark-epoch'] = epoch
  res.writeHead(status, headers)
}

/** A v1 error response as the feed server sends it. */
export function v1Error(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  v1Head(res, status, 'json')
  res.end(JSON.stringify(body))
}

/** A changes listing of `lines`, closed by the end line unless `end` is false. */
export function v1Changes(res: ServerResponse, lines: string[], end: { epoch?: string; head: number; last: number } | false, epoch = 'e1'): void {
  v1Head(res, 200, 'ndjson', epoch)
  let body = lines.map((l) => `${l}\n`).join('')
  if (end) body += `${JSON.stringify({ end: true, epoch: end.epoch ?? epoch, head: end.head, last: end.last })}\n`
  res.end(body)
}

/** One change line in the encoder's exact shape, with `data` spliced in as given. */
export function changeLine(seq: number, tx = seq, data: string | null = String(seq), key = `k${seq}`): string {
  const d = data === null ? '' : `,"data":${data}`
  return `{"seq":${seq},"key":${JSON.stringify(key)},"op":"${data === null ? 'delete' : 'upsert'}"${d},"tx":${tx},"ts":1764072000123}`
}
