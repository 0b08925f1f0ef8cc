/**
 * HTTPS end to end with a CA of the test's own (openssl): the feed server with a certificate, the
 * replica's client trusting that CA only; another CA (or the system's) is refused; a reload swaps
 * the certificate for new connections while an open long-poll goes on.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { TidemarkError } from '../../src/errors.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { HttpFeedSource, type HttpFeedSourceOptions } from '../../src/transport/http/http-feed-source.js'
import { testCa } from '../helpers/tls.js'
import { eventually, storeWaiters } from './helpers.js'
import { tmpDb } from '../helpers/tmp.js'

const first = testCa('first CA')
const second = testCa('second CA')

async function tlsServer() {
  const store = SqliteSourceStore.open(tmpDb())
  await store.ensureFeed('customers')
  await store.write('customers', [{ op: 'upsert', key: 'a', data: { name: 'Ada' } }])
  const server = await createFeedServer({ store, maintainEveryMs: 0, tls: { cert: first.cert, key: first.key } })
  const { url } = await server.listen({ port: 0 })
  const sources: HttpFeedSource[] = []
  after(async () => {
    for (const s of sources) await s.close()
    await server.close()
    await store.close()
  })
  const connect = (options: HttpFeedSourceOptions) => {
    const s = new HttpFeedSource(url, { timeoutMs: 5000, ...options })
    sources.push(s)
    return s
  }
  return { store, server, url, connect }
}

const refusedCertificate = (e: unknown) => {
  assert.ok(e instanceof TidemarkError, String(e))
  assert.equal(e.code, 'store-unavailable')
  assert.match(e.message, /its TLS certificate is not one this client trusts \(.+\): give the CA that signed it \(--ca/)
  return true
}

describe('feed server over TLS', () => {
  it('serves https to a client that trusts its CA, and is refused by one that does not', async () => {
    const { url, connect } = await tlsServer()
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/)
    assert.equal((await connect({ ca: first.ca }).info('customers')).head, 1)
    assert.equal((await connect({ ca: first.ca }).changes('customers', { after: 0 })).changes.length, 1)
    await assert.rejects(connect({ ca: second.ca }).info('customers'), refusedCertificate)
    await assert.rejects(connect({}).info('customers'), refusedCertificate, 'the system CAs do not know the test CA')
    // Plain HTTP to the TLS port is no answer at all.
    await assert.rejects(new HttpFeedSource(url.replace('https', 'http'), { timeoutMs: 2000 }).info('customers'), (e) => e instanceof TidemarkError)
  })

  it('reloads its certificate for new connections while an open long-poll goes on', async () => {
    const { store, server, connect } = await tlsServer()
    const old = connect({ ca: first.ca })
    await old.info('customers')
    const waiting = old.changes('customers', { after: 1, waitMs: 20_000 })
    await eventually(() => storeWaiters(store) === 1, 'the long-poll waiting on its connection')
    server.reloadTls({ cert: second.cert, key: second.key })
    assert.equal((await connect({ ca: second.ca }).info('customers')).head, 1, 'a new connection gets the new certificate')
    await assert.rejects(connect({ ca: first.ca }).info('customers'), refusedCertificate)
    await store.write('customers', [{ op: 'upsert', key: 'b', data: { name: 'Bob' } }])
    const page = await waiting
    assert.deepEqual(page.changes.map((c) => c.key), ['b'], 'the long-poll on the old connection was answered, not dropped')
  })

  it('refuses a certificate and key that do not belong together, and keeps the old one on a bad reload', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    after(() => store.close())
    await assert.rejects(
      createFeedServer({ store, maintainEveryMs: 0, tls: { cert: first.cert, key: second.key } }),
      (e) => e instanceof TidemarkError && e.code === 'bad-request' && /not usable together/.test(e.message),
    )
    const { server, connect } = await tlsServer()
    assert.throws(() => server.reloadTls({ cert: second.cert, key: first.key }), /not usable together/)
    assert.throws(() => server.reloadTls({ cert: 'not a certificate', key: first.key }), /not usable together/)
    assert.equal((await connect({ ca: first.ca }).info('customers')).head, 1, 'still the first certificate')
  })
})
