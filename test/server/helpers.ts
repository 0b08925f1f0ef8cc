import { after } from 'node:test'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { createFeedServer, type FeedServer, type FeedServerOptions } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { SourceStore } from '../../src/store/store.js'
import { tmpDb } from '../helpers/tmp.js'

export interface Fixture {
  path: string
  store: SqliteSourceStore
  server: FeedServer
}

/** A SQLite source in a temp folder and a feed server over it, both closed when the test file ends. */
export async function serve(options: Partial<FeedServerOptions> & { wrap?: (store: SqliteSourceStore) => SourceStore } = {}): Promise<Fixture> {
  const path = tmpDb()
  const store = SqliteSourceStore.open(path)
  const { wrap, ...rest } = options
  const server = await createFeedServer({ maintainEveryMs: 0, ...rest, store: wrap ? wrap(store) : store })
  after(async () => {
    await server.close()
    await store.close()
  })
  return { path, store, server }
}

/** Parses an NDJSON body into its lines' values. */
export function ndjson(body: string): Array<Record<string, unknown>> {
  return body
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

/** The number of long-polls the store is waiting for (the SQLite store's change watcher's waiters). */
export function storeWaiters(store: SqliteSourceStore): number {
  return (store as unknown as { watcher: { waiters: Set<unknown> } }).watcher.waiters.size
}

/** A GET over a fresh connection (no agent, no keep-alive), resolving with status, headers and body. */
export function get(url: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.setEncoding('utf8')
      let body = ''
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** Polls `check` every few ms until it returns true; fails after `ms` (a guard against hanging, not a timing assertion). */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
