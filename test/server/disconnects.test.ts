import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { eventually, get, ndjson, serve, storeWaiters, type Fixture } from './helpers.js'

// Clients that hang up: in the middle of a long listing, or while their long-poll waits. Afterwards
// the server must hold nothing for them (sockets, timers, file watchers, store waiters) and its
// heap must not have grown with them.

const gc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as () => void
  })()

function heapAfterGc(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/** Active resources (sockets, timers, watchers) by type, e.g. { TCPSocketWrap: 2, Timeout: 1 }. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

/** True when there are no more sockets, watchers or timers than in `baseline`. */
function backTo(baseline: Record<string, number>): boolean {
  const now = resources()
  return Object.entries(now).every(([type, n]) => n <= (baseline[type] ?? 0))
}

/** Opens a GET and hangs up at the first byte of the body (or, with `until`, when `until` resolves). */
function hangUp(url: string, until?: Promise<void>): { opened: Promise<void>; closed: Promise<void> } {
  let opened!: () => void
  const openedP = new Promise<void>((resolve) => (opened = resolve))
  const closed = new Promise<void>((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.once('data', () => req.destroy())
      res.on('error', () => {})
    })
    req.on('socket', (socket) => socket.on('connect', opened))
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || req.destroyed ? undefined : reject(error)))
    req.on('close', resolve)
    req.end()
    void until?.then(() => req.destroy())
  })
  return { opened: openedP, closed }
}

async function inBatches(n: number, batch: number, run: (i: number) => Promise<void>): Promise<void> {
  for (let start = 0; start < n; start += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - start) }, (_, j) => run(start + j)))
  }
}

async function metric(fx: Fixture, pattern: RegExp): Promise<number> {
  const text = (await fx.server.app.inject({ url: '/metrics' })).body
  const match = pattern.exec(text)
  return match ? Number(match[1]) : 0
}

describe('feed server: clients that hang up', () => {
  // A listener added per request to something long-lived would show as MaxListenersExceededWarning.
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => {
    warnings.push(warning)
  }
  before(() => process.on('warning', onWarning))
  after(() => {
    process.off('warning', onWarning)
    assert.deepEqual(warnings.map((w) => `${w.name}: ${w.message}`), [])
  })

  it('forgets 1,000 clients that hang up in the middle of a long listing', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('big')
    const total = 40_000
    for (let start = 0; start < total; start += 1000) {
      await fx.store.write(
        'big',
        Array.from({ length: 1000 }, (_, i) => ({ op: 'upsert' as const, key: `k${start + i}`, data: { n: start + i, pad: 'p'.repeat(150) } })),
      )
    }
    const { url } = await fx.server.listen({ port: 0 })
    const listing = `${url}/v1/feeds/big/changes?limit=100000`

    // Warm up (JIT, pools, caches), then take the baselines.
    await inBatches(50, 25, async () => hangUp(listing).closed)
    await eventually(() => backTo(resources()), 'warm-up to settle')
    const baseline = resources()
    const heapBefore = heapAfterGc()

    await inBatches(1000, 25, async () => hangUp(listing).closed)

    await eventually(() => backTo(baseline), `resources back to ${JSON.stringify(baseline)}, now ${JSON.stringify(resources())}`)
    const aborted = await metric(fx, /tidemark_http_requests_total\{method="GET",route="\/v1\/feeds\/:feed\/changes",status="aborted"\} (\d+)/)
    const finished = await metric(fx, /tidemark_http_requests_total\{method="GET",route="\/v1\/feeds\/:feed\/changes",status="200"\} (\d+)/)
    assert.equal(aborted + finished, 1050, 'every request was accounted for')
    assert.ok(aborted > 0)

    const grown = heapAfterGc() - heapBefore
    assert.ok(grown < 16 * 1024 * 1024, `heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB over 1,000 hung-up listings`)

    // Still serving, complete listings included.
    const full = await get(listing)
    const lines = ndjson(full.body)
    assert.equal(lines.length, total + 1)
    assert.equal(lines.at(-1)?.last, total)
  })

  it('forgets 1,000 clients that hang up while their long-poll waits', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('live')
    await fx.store.write('live', [{ op: 'upsert', key: 'a', data: 1 }])
    const { url } = await fx.server.listen({ port: 0 })
    const poll = `${url}/v1/feeds/live/changes?after=1&wait=30000`

    const round = async (n: number): Promise<void> => {
      let hangUpNow!: () => void
      const signal = new Promise<void>((resolve) => (hangUpNow = resolve))
      const clients = Array.from({ length: n }, () => hangUp(poll, signal))
      await Promise.all(clients.map((c) => c.opened))
      await eventually(() => storeWaiters(fx.store) === n, `${n} long-polls to wait (${storeWaiters(fx.store)} do)`)
      assert.equal(await metric(fx, /tidemark_long_polls_open (\d+)/), n)
      hangUpNow()
      await Promise.all(clients.map((c) => c.closed))
      await eventually(() => storeWaiters(fx.store) === 0, `the store to forget its waiters (${storeWaiters(fx.store)} left)`)
    }

    await round(50)
    await eventually(() => backTo(resources()), 'warm-up to settle')
    const baseline = resources()
    const heapBefore = heapAfterGc()

    for (let i = 0; i < 4; i++) await round(250)

    await eventually(() => backTo(baseline), `resources back to ${JSON.stringify(baseline)}, now ${JSON.stringify(resources())}`)
    assert.equal(storeWaiters(fx.store), 0)
    assert.equal(await metric(fx, /tidemark_long_polls_open (\d+)/), 0)
    const aborted = await metric(fx, /tidemark_http_requests_total\{method="GET",route="\/v1\/feeds\/:feed\/changes",status="aborted"\} (\d+)/)
    assert.equal(aborted, 1050)
    const grown = heapAfterGc() - heapBefore
    assert.ok(grown < 16 * 1024 * 1024, `heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB over 1,000 hung-up long-polls`)

    // Still serving, long-polls included.
    const next = get(poll)
    await eventually(() => storeWaiters(fx.store) === 1, 'a new long-poll to wait')
    await fx.store.write('live', [{ op: 'upsert', key: 'b', data: 2 }])
    assert.deepEqual(ndjson((await next).body).map((l) => l.key ?? `end ${l.last}`), ['b', 'end 2'])
  })
})
