/**
 * Suite `source`: the source side on SQLite — what capture costs the owner's writes, how fast the
 * indexer digests, how fast the feed server serves the log, how soon a long-poll wakes, and the
 * measurements behind the digest's hash and bucket count. docs/bench.md explains each figure.
 */
import { join } from 'node:path'
import { createFeedServer, type FeedServerOptions } from '../../src/server/feed-server.js'
import { createToken, tokenAuthorizer } from '../../src/server/tokens.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { atLeast, atMost, gc, median, percentile, TempDirs } from '../harness.js'
import { ChangesClient } from '../source/changes-client.js'
import { fillFeed, measureReads, readOverHttp } from '../source/changes-read.js'
import { makeTestCertificate, type TestCertificate } from '../source/tls-certificate.js'
import { HASHES, measureBucketUpdates, measureHashes } from '../source/digest-choices.js'
import { measureIndexer } from '../source/indexer-rate.js'
import { measureLongPoll, WaitSignal } from '../source/long-poll.js'
import { measureOwnerWrites, VARIANTS } from '../source/owner-writes.js'
import type { BenchContext, Suite } from '../suite.js'

interface Sizes {
  txSizes: number[]
  rowsPerRun: (txSize: number) => number
  writeRounds: number
  initialRows: number
  indexerChanges: number
  indexerRounds: number
  hashRows: number
  hashRounds: number
  bucketChanges: number
  bucketRounds: number
  httpChanges: number
  readRounds: number
  commits: number
}

const FULL: Sizes = {
  txSizes: [1, 10, 100],
  rowsPerRun: (tx) => (tx === 1 ? 10_000 : tx === 10 ? 20_000 : 40_000),
  writeRounds: 5,
  initialRows: 10_000,
  indexerChanges: 100_000,
  indexerRounds: 3,
  hashRows: 100_000,
  hashRounds: 5,
  bucketChanges: 100_000,
  bucketRounds: 3,
  httpChanges: 1_000_000,
  readRounds: 3,
  commits: 1000,
}

const QUICK: Sizes = {
  txSizes: [1, 10, 100],
  rowsPerRun: (tx) => (tx === 1 ? 500 : tx === 10 ? 2000 : 4000),
  writeRounds: 2,
  initialRows: 1000,
  indexerChanges: 10_000,
  indexerRounds: 1,
  hashRows: 10_000,
  hashRounds: 2,
  bucketChanges: 10_000,
  bucketRounds: 1,
  httpChanges: 50_000,
  readRounds: 2,
  commits: 100,
}

async function ownerWriteFigures(ctx: BenchContext, sizes: Sizes): Promise<void> {
  // WAL with synchronous=NORMAL (no fsync at commit) shows capture's cost at its largest; FULL,
  // SQLite's default, is what an owner that wants every commit durable runs.
  for (const synchronous of ['NORMAL', 'FULL'] as const) {
    const full = synchronous === 'FULL'
    const rates = await measureOwnerWrites({
      dir: ctx.tmpDir(),
      txSizes: full ? sizes.txSizes.filter((t) => t <= 10) : sizes.txSizes,
      rowsPerRun: full ? (t) => Math.max(t, Math.round(sizes.rowsPerRun(t) / 10)) : sizes.rowsPerRun,
      rounds: sizes.writeRounds,
      initialRows: sizes.initialRows,
      synchronous,
      ...(full ? { variants: ['plain', 'library API', 'table capture'] } : {}),
      signal: ctx.signal,
      log: ctx.log,
    })
    for (const [txSize, byVariant] of rates) {
      const plain = byVariant.get('plain') as number
      for (const v of VARIANTS) {
        if (v.name === 'plain' || !byVariant.has(v.name)) continue
        ctx.report({
          figure: `owner writes${full ? ' (sync=FULL)' : ''}, ${txSize}-row tx: ${v.name}`,
          value: byVariant.get(v.name) as number,
          unit: 'rows/s',
          baseline: { name: 'no tidemark', value: plain },
          ratio: 'baseline/value',
          ...(v.breakdown ? {} : { target: atMost(1.5, '≤ 1.5× cost') }),
        })
      }
    }
  }
}

async function indexerFigure(ctx: BenchContext, sizes: Sizes): Promise<void> {
  const r = await measureIndexer(ctx.tmpDir(), sizes.indexerChanges, sizes.indexerRounds)
  ctx.log(`indexer: ${Math.round(r.digestRate)} changes/s digested, API writes ${Math.round(r.writeRate)} changes/s`)
  ctx.report({
    figure: 'indexer: changes digested by maintain()',
    value: r.digestRate,
    unit: 'changes/s',
    baseline: { name: 'API writes, 100-row tx', value: r.writeRate },
    target: atLeast(1, '≥ 1× (keeps up)'),
  })
}

async function digestChoiceFigures(ctx: BenchContext, sizes: Sizes): Promise<void> {
  const hashes = measureHashes(sizes.hashRows, sizes.hashRounds)
  const md5 = hashes.byAlgorithm.get('md5') as number
  for (const h of HASHES) {
    if (h === 'md5') continue
    ctx.report({
      figure: `row hash: ${h}`,
      value: hashes.byAlgorithm.get(h) as number,
      unit: 'rows/s',
      baseline: { name: 'md5', value: md5 },
    })
  }
  ctx.report({
    figure: 'indexer hashing per change (rowHash + bucketOf)',
    value: hashes.indexerHashing,
    unit: 'rows/s',
    baseline: { name: 'md5', value: md5 },
  })
  const dir = ctx.tmpDir()
  const byBits = new Map<number, number>()
  for (const bits of [12, 16, 20]) {
    ctx.signal.throwIfAborted()
    byBits.set(bits, measureBucketUpdates(dir, bits, sizes.bucketChanges, sizes.bucketRounds))
  }
  ctx.log(`bucket updates: ${[...byBits].map(([b, r]) => `2^${b} ${Math.round(r)}/s`).join(', ')}`)
  for (const bits of [12, 20]) {
    ctx.report({
      figure: `digest bucket updates, 2^${bits} buckets`,
      value: byBits.get(bits) as number,
      unit: 'changes/s',
      baseline: { name: '2^16 buckets', value: byBits.get(16) as number },
    })
  }
}

async function feedServerFigures(ctx: BenchContext, sizes: Sizes): Promise<void> {
  const path = join(ctx.tmpDir(), 'feed.db')
  const fillRate = fillFeed(path, 'customers', sizes.httpChanges)
  ctx.log(`${sizes.httpChanges} changes written through the API at ${Math.round(fillRate)} changes/s`)
  const store = SqliteSourceStore.open(path)
  await store.ensureFeed('live')
  const waits = new WaitSignal(store)
  // No maintenance pass: digesting the fresh log would compete with the reads being measured.
  const server = await createFeedServer({ store: waits.store, maintainEveryMs: 0 })
  const temp = new TempDirs()
  let client: ChangesClient | undefined
  try {
    const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
    const reads = await measureReads(temp, path, url, 'customers', sizes.httpChanges, sizes.readRounds)
    ctx.log(
      `changes read: HTTP ${Math.round(reads.http)}/s, from another process ${Math.round(reads.httpOtherProcess)}/s, SQLite ${Math.round(reads.sqlite)}/s`,
    )
    const sqlite = { name: 'SQLite in-process', value: reads.sqlite }
    ctx.report({
      figure: `changes read over HTTP (${sizes.httpChanges.toLocaleString('en-US')} changes)`,
      value: reads.http,
      unit: 'changes/s',
      baseline: sqlite,
      target: atLeast(0.5, '≥ 0.5×'),
    })
    ctx.report({ figure: 'changes read over HTTP, client in another process', value: reads.httpOtherProcess, unit: 'changes/s', baseline: sqlite })

    client = new ChangesClient(url)

    const lat = await measureLongPoll({ path, feed: 'live', client, waits, temp, commits: sizes.commits, signal: ctx.signal })
    for (const p of [50, 99]) {
      const plain = { name: `plain request p${p}`, value: percentile(lat.plain, p) }
      ctx.report({ figure: `long-poll wake-up p${p}, commit in-process`, value: percentile(lat.longPoll, p), unit: 'ms', baseline: plain })
      ctx.report({ figure: `long-poll wake-up p${p}, commit by another process`, value: percentile(lat.childLongPoll, p), unit: 'ms', baseline: plain })
    }
    await tlsFigures(ctx, sizes, { path, waits, temp, client, plainLongPollP50: percentile(lat.longPoll, 50) })
    await tokenFigures(ctx, sizes, { path, waits, temp, client, plainLongPollP50: percentile(lat.longPoll, 50) })
  } finally {
    await client?.close()
    await server.close()
    await store.close()
    temp.cleanup()
  }
}

/**
 * The same reads and long-polls over HTTPS (a second server over the same store, with a throwaway
 * CA), each next to its plain HTTP figure of this run: reads alternate plain and TLS rounds.
 */
async function tlsFigures(
  ctx: BenchContext,
  sizes: Sizes,
  run: { path: string; waits: WaitSignal; temp: TempDirs; client: ChangesClient; plainLongPollP50: number },
): Promise<void> {
  let certificate: TestCertificate
  try {
    certificate = makeTestCertificate(ctx.tmpDir())
  } catch (error) {
    ctx.log(`TLS figures skipped: cannot make a test certificate with openssl (${(error as Error).message})`)
    return
  }
  await compareWithPlain(ctx, sizes, run, { tls: { cert: certificate.cert, key: certificate.key } }, { ca: certificate.ca }, {
    log: 'HTTPS',
    reads: `changes read over HTTPS (${sizes.httpChanges.toLocaleString('en-US')} changes)`,
    readsBaseline: 'plain HTTP, same rounds',
    longPoll: 'long-poll wake-up p50 over TLS, commit in-process',
    longPollBaseline: 'plain HTTP long-poll p50',
  })
}

/**
 * The same reads and long-polls with scoped-token checks on (issue 15): a second server over the
 * same store asks every request for a `read` token of the store's token table; reads alternate
 * rounds without and with the checks.
 */
async function tokenFigures(
  ctx: BenchContext,
  sizes: Sizes,
  run: { path: string; waits: WaitSignal; temp: TempDirs; client: ChangesClient; plainLongPollP50: number },
): Promise<void> {
  const { secret } = await createToken(run.waits.store.tokens, { name: `bench-${Date.now()}`, feeds: ['customers', 'live'], scopes: ['read'] })
  const authorize = await tokenAuthorizer(run.waits.store.tokens)
  await compareWithPlain(ctx, sizes, run, authorize ? { authorize } : {}, { token: secret }, {
    log: 'with token checks',
    reads: `changes read over HTTP with scoped-token checks (${sizes.httpChanges.toLocaleString('en-US')} changes)`,
    readsBaseline: 'no token checks, same rounds',
    longPoll: 'long-poll wake-up p50 with scoped-token checks, commit in-process',
    longPollBaseline: 'no token checks, long-poll p50',
  })
}

/**
 * A second server over the same store with `serverOptions`, read in rounds alternating with the
 * plain server, then long-polled: each figure reported next to the plain one of this run.
 */
async function compareWithPlain(
  ctx: BenchContext,
  sizes: Sizes,
  run: { path: string; waits: WaitSignal; temp: TempDirs; client: ChangesClient; plainLongPollP50: number },
  serverOptions: Partial<FeedServerOptions>,
  clientOptions: ConstructorParameters<typeof ChangesClient>[1],
  names: { log: string; reads: string; readsBaseline: string; longPoll: string; longPollBaseline: string },
): Promise<void> {
  const server = await createFeedServer({ ...serverOptions, store: run.waits.store, maintainEveryMs: 0 })
  const client = new ChangesClient((await server.listen({ host: '127.0.0.1', port: 0 })).url, clientOptions)
  try {
    const plain: number[] = []
    const other: number[] = []
    for (let round = 0; round < sizes.readRounds; round++) {
      ctx.signal.throwIfAborted()
      gc()
      plain.push((await readOverHttp(run.client, 'customers', sizes.httpChanges, 100_000)).rate)
      gc()
      other.push((await readOverHttp(client, 'customers', sizes.httpChanges, 100_000)).rate)
    }
    ctx.log(`changes read: ${names.log} ${Math.round(median(other))}/s, plain ${Math.round(median(plain))}/s`)
    ctx.report({ figure: names.reads, value: median(other), unit: 'changes/s', baseline: { name: names.readsBaseline, value: median(plain) } })
    const lat = await measureLongPoll({ path: run.path, feed: 'live', client, waits: run.waits, temp: run.temp, commits: sizes.commits, signal: ctx.signal })
    ctx.report({ figure: names.longPoll, value: percentile(lat.longPoll, 50), unit: 'ms', baseline: { name: names.longPollBaseline, value: run.plainLongPollP50 } })
  } finally {
    await client.close()
    await server.close()
  }
}

export const source: Suite = {
  name: 'source',
  description: 'source side on SQLite: capture cost, indexer, changes over HTTP, long-poll wake-up, digest choices',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    await ownerWriteFigures(ctx, sizes)
    await indexerFigure(ctx, sizes)
    await feedServerFigures(ctx, sizes)
    await digestChoiceFigures(ctx, sizes)
  },
}
