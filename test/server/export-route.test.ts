import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { TidemarkError } from '../../src/errors.js'
import { EXPORT_MEDIA_TYPE } from '../../src/export/export-format.js'
import { checkExport } from '../../src/export/importer.js'
import { openExport } from '../../src/export/export-reader.js'
import { serve } from './helpers.js'

// The route's scratch copies go to TMPDIR: a folder of this file's own, to see that none is left.
const scratch = mkdtempSync(join(tmpdir(), 'tidemark-export-route-'))
const previous = process.env.TMPDIR
before(() => (process.env.TMPDIR = scratch))
after(() => {
  process.env.TMPDIR = previous
  rmSync(scratch, { recursive: true, force: true })
})

/** Scratch files left in the folder (the fixtures' own temp folders land there too). */
function leftovers(): string[] {
  return readdirSync(scratch).filter((f) => f.startsWith('.tidemark-scratch'))
}

async function* bytes(body: ArrayBuffer): AsyncGenerator<Buffer> {
  yield Buffer.from(body)
}

describe('GET /v1/feeds/:feed/export', () => {
  it('streams an export file exact at the position it names in tidemark-head, in either compression', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('customers')
    for (let i = 0; i < 30; i++) await fx.store.write('customers', [{ op: 'upsert', key: `c${i}`, data: { i } }])
    await fx.store.write('customers', [{ op: 'delete', key: 'c3' }])
    const { url } = await fx.server.listen({ port: 0 })
    for (const compression of ['br', 'gzip']) {
      const res = await fetch(`${url}/v1/feeds/customers/export?compression=${compression}`)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), EXPORT_MEDIA_TYPE)
      assert.equal(res.headers.get('tidemark-head'), '31')
      assert.match(res.headers.get('content-disposition') ?? '', /filename="customers-31\.tidemark"/)
      const body = await res.arrayBuffer()
      const checked = await checkExport(bytes(body))
      assert.deepEqual([checked.header.position, checked.header.rows, checked.header.compression, checked.header.epoch], [31, 29, compression, res.headers.get('tidemark-epoch')])
      const reader = await openExport(bytes(body))
      const keys: string[] = []
      for await (const batch of reader.rows) keys.push(...batch.map((r) => r.key))
      assert.equal(keys.length, 29)
      assert.ok(!keys.includes('c3'))
    }
    assert.deepEqual(leftovers(), [], 'the scratch copies are gone')
  })

  it('answers errors in the protocol’s shape before any byte of a file', async () => {
    const fx = await serve({
      authorize: ({ token }) => {
        if (token !== 't') throw new TidemarkError('unauthorized', 'a token is needed')
      },
    })
    await fx.store.ensureFeed('customers')
    const { url } = await fx.server.listen({ port: 0 })
    const auth = { headers: { authorization: 'Bearer t' } }
    const cases: Array<[string, RequestInit, number, string]> = [
      ['/v1/feeds/customers/export', {}, 401, 'unauthorized'],
      ['/v1/feeds/nope/export', auth, 404, 'unknown-feed'],
      ['/v1/feeds/customers/export?compression=zip', auth, 400, 'bad-request'],
      ['/v1/feeds/customers/export?epoch=other', auth, 409, 'epoch-changed'],
    ]
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${url}${path}`, init)
      assert.equal(res.status, status, path)
      assert.equal(((await res.json()) as { error: string }).error, code, path)
    }
  })

  it('drops the scratch copy when the client hangs up mid-file', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('customers')
    // Incompressible rows, megabytes of them: the file cannot fit in the socket's buffers at once.
    for (let t = 0; t < 10; t++) await fx.store.write('customers', Array.from({ length: 500 }, (_, i) => ({ op: 'upsert' as const, key: `k${t}-${i}`, data: randomBytes(1000).toString('hex') })))
    const { url } = await fx.server.listen({ port: 0 })
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${url}/v1/feeds/customers/export?compression=gzip`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', reject)
      req.end()
    })
    for (let i = 0; i < 100 && leftovers().length > 0; i++) await delay(20)
    assert.deepEqual(leftovers(), [])
  })

  it('makes at most limits.exports at once: the next is 503 busy with Retry-After until one is over', async () => {
    let open: () => void = () => {}
    let gate: Promise<void> = new Promise((resolve) => (open = resolve))
    let held = 0
    const fx = await serve({
      limits: { exports: 1 },
      // The export's copy waits at its first snapshot read until the test opens the gate.
      wrap: (store) =>
        new Proxy(store, {
          get(target, name, receiver) {
            const value = Reflect.get(target, name, receiver) as unknown
            if (name !== 'snapshot' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value
            return async (...args: unknown[]) => {
              held++
              await gate
              return (value as (...a: unknown[]) => unknown).apply(target, args)
            }
          },
        }),
    })
    await fx.store.ensureFeed('customers')
    await fx.store.write('customers', [{ op: 'upsert', key: 'a', data: 1 }])
    const { url } = await fx.server.listen({ port: 0 })
    const first = fetch(`${url}/v1/feeds/customers/export`)
    for (let i = 0; i < 500 && held === 0; i++) await delay(10)
    assert.equal(held, 1, 'the first export is copying')
    const busy = await fetch(`${url}/v1/feeds/customers/export`)
    assert.equal(busy.status, 503)
    assert.equal(busy.headers.get('retry-after'), '10')
    assert.equal(busy.headers.get('tidemark-protocol'), '1')
    const body = (await busy.json()) as { error: string; message: string; retryAfter: number }
    assert.equal(body.error, 'busy')
    assert.equal(body.retryAfter, 10)
    assert.match(body.message, /making 1 exports already \(its limit\): ask again in 10 s/)
    open()
    const done = await first
    assert.equal(done.status, 200)
    await done.arrayBuffer()
    // The slot is free again once the first answer is over.
    gate = Promise.resolve()
    let again = await fetch(`${url}/v1/feeds/customers/export`)
    for (let i = 0; i < 50 && again.status === 503; i++) {
      await again.arrayBuffer()
      await delay(20)
      again = await fetch(`${url}/v1/feeds/customers/export`)
    }
    assert.equal(again.status, 200)
    await again.arrayBuffer()
  })
})
