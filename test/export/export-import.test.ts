import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { ExportFileError } from '../../src/export/export-format.js'
import type { ExportInput } from '../../src/export/export-reader.js'
import { prepareExport } from '../../src/export/exporter.js'
import { checkExport, importExport } from '../../src/export/importer.js'
import { ConflictError } from '../../src/errors.js'
import type { PhaseChange } from '../../src/replica/phase.js'
import { createReplica } from '../../src/replica/replica.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import type { Json, WriteOp } from '../../src/protocol/types.js'
import type { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { propertyParameters } from '../helpers/property.js'
import { projectionHook, replicaState, sourceFixture } from '../helpers/replica-fixture.js'

type Fixture = Awaited<ReturnType<typeof sourceFixture>>

/** A source whose owner writes a transaction before each request the exporter makes: writes land between every two chunks. */
function busyOwner(fx: Fixture, txs: WriteOp[][], local: FeedSource = fx.local): FeedSource {
  const next = async (): Promise<void> => {
    const ops = txs.shift()
    if (ops !== undefined && ops.length > 0) await fx.source.write(fx.feed, ops)
  }
  return {
    description: local.description,
    info: (feed, signal) => local.info(feed, signal),
    rows: (feed, keys, signal) => local.rows(feed, keys, signal),
    digest: (feed, request) => local.digest(feed, request),
    keys: (feed, request) => local.keys(feed, request),
    async snapshot(feed, request) {
      await next()
      return local.snapshot(feed, request)
    },
    async changes(feed, request) {
      await next()
      return local.changes(feed, request)
    },
  }
}

async function exportToBuffer(source: FeedSource, fx: Fixture, options: { snapshotChunk?: number; key?: Uint8Array } = {}) {
  const prepared = await prepareExport({ source, feed: fx.feed, scratchDir: fx.dir, snapshotChunk: options.snapshotChunk ?? 3, ...(options.key ? { key: options.key } : {}) })
  const parts: Buffer[] = []
  for await (const part of prepared.body) parts.push(part)
  return { header: prepared.header, file: Buffer.concat(parts) }
}

function input(file: Buffer): () => ExportInput {
  return async function* () {
    for (let i = 0; i < file.length; i += 1000) yield file.subarray(i, i + 1000)
  }
}

/** The source's state at `position`, rebuilt from its log (the tests keep the whole log). */
async function stateAt(fx: Fixture, position: number): Promise<Map<string, { seq: number; data: string }>> {
  const state = new Map<string, { seq: number; data: string }>()
  for await (const batch of fx.source.changes(fx.feed, 0)) {
    for (const c of batch) {
      if (c.seq > position) return state
      if (c.op === 'delete') state.delete(c.key)
      else state.set(c.key, { seq: c.seq, data: JSON.stringify(c.data) })
    }
  }
  return state
}

async function catchUp(fx: Fixture, store: SqliteReplicaStore, name = fx.feed) {
  const seen: PhaseChange[] = []
  const warnings: string[] = []
  const replica = createReplica({
    source: fx.local,
    feed: fx.feed,
    name,
    store,
    onPhase: (c) => seen.push(c),
    logger: { debug() {}, info() {}, error() {}, warn: (_o, msg) => warnings.push(msg ?? '') },
  })
  const running = replica.run()
  await replica.caughtUp()
  await replica.stop()
  await running
  return { phases: seen.map((c) => `${c.from}→${c.to}`), warnings }
}

const opArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('upsert' as const), key: fc.integer({ min: 0, max: 30 }).map((k) => `k${k}`), data: fc.oneof(fc.integer(), fc.string(), fc.constant({ a: [1, 'ü'] })) as fc.Arbitrary<Json> }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }).map((k) => `k${k}`) }) },
) as fc.Arbitrary<WriteOp>
const txsArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 4 }), { maxLength: 12 })

describe('export → import → catch up', () => {
  it('exports the exact state at the file’s position while the owner writes; the imported replica catches up to equal the source', async () => {
    await fc.assert(
      fc.asyncProperty(txsArb, txsArb, txsArb, fc.integer({ min: 1, max: 7 }), async (before, during, after, chunk) => {
        const fx = await sourceFixture()
        for (const ops of before) await fx.source.write(fx.feed, ops)
        const { header, file } = await exportToBuffer(busyOwner(fx, [...during]), fx, { snapshotChunk: chunk })
        assert.equal(header.epoch, (await fx.source.getFeed(fx.feed)).epoch)

        const checked = await checkExport(input(file)())
        const store = fx.openReplicaStore(fx.replicaPath())
        try {
          const result = await importExport({ open: input(file), store, source: fx.local.description, checked })
          assert.equal(result.state.seq, header.position)
          assert.equal(result.state.keys, header.rows)
          // Exactly the state at the file's position, data text byte for byte.
          assert.deepEqual(await replicaState(store, fx.feed), await stateAt(fx, header.position))

          for (const ops of after) await fx.source.write(fx.feed, ops)
          const { phases } = await catchUp(fx, store)
          assert.ok(!phases.some((p) => p.endsWith('bootstrapping')), `it should catch up from the file, not re-bootstrap: ${phases.join(', ')}`)
          assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
          const src = await fx.source.digestLeaves(fx.feed)
          const rep = await store.digestLeaves(fx.feed)
          assert.equal(rep.seq, src.seq)
          assert.deepEqual(rep.leaves, src.leaves)
        } finally {
          await store.close()
        }
      }),
      propertyParameters(25),
    )
  })

  it('exports exactly over HTTP too, with the owner writing between every two requests', async () => {
    const fx = await sourceFixture()
    await fx.write(40, 2, 30)
    const server = await createFeedServer({ store: fx.source, maintainEveryMs: 0 })
    const { url } = await server.listen({ port: 0 })
    const http = new HttpFeedSource(url)
    try {
      let n = 0
      const txs = Array.from({ length: 40 }, (): WriteOp[] => [
        { op: 'upsert', key: `k${n % 30}`, data: { during: n++ } },
        n % 3 === 0 ? { op: 'delete', key: `k${(n * 7) % 30}` } : { op: 'upsert', key: `new${n}`, data: n },
      ])
      const { header, file } = await exportToBuffer(busyOwner(fx, txs, http), fx, { snapshotChunk: 4 })
      assert.ok(txs.length < 40 && header.position > 80, 'the owner wrote while the export read')
      const store = fx.openReplicaStore(fx.replicaPath())
      await importExport({ open: input(file), store, source: url })
      assert.deepEqual(await replicaState(store, fx.feed), await stateAt(fx, header.position))
      await store.close()
    } finally {
      await http.close()
      await server.close()
    }
  })

  it('re-bootstraps, saying why, when the source’s epoch changed since the export', async () => {
    const fx = await sourceFixture()
    await fx.write(20)
    const { file } = await exportToBuffer(fx.local, fx)
    const store = fx.openReplicaStore(fx.replicaPath())
    await importExport({ open: input(file), store, source: fx.local.description })
    await fx.source.resetEpoch(fx.feed)
    await fx.write(5)
    const { phases, warnings } = await catchUp(fx, store)
    assert.ok(phases.includes('catching-up→bootstrapping'), phases.join(', '))
    assert.ok(warnings.some((w) => /has epoch .*, not .*: its history was reset, so a replica must re-bootstrap/.test(w)), warnings.join('\n'))
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await store.close()
  })

  it('re-bootstraps, saying by how much, when the source’s log no longer reaches back to the file’s position', async () => {
    const fx = await sourceFixture()
    await fx.source.ensureFeed(fx.feed, { retention: { changes: 10 } })
    await fx.write(20)
    const { header, file } = await exportToBuffer(fx.local, fx)
    await fx.write(100)
    await fx.source.maintain()
    const store = fx.openReplicaStore(fx.replicaPath())
    await importExport({ open: input(file), store, source: fx.local.description })
    const { phases, warnings } = await catchUp(fx, store)
    assert.ok(phases.includes('catching-up→bootstrapping'), phases.join(', '))
    const behind = (await fx.source.getFeed(fx.feed)).minSeq - 1 - header.position
    assert.ok(warnings.some((w) => new RegExp(`${behind} changes behind the oldest change .*checkpoint ${header.position}.*raise the feed's retention`).test(w)), warnings.join('\n'))
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await store.close()
  })

  it('refuses to replace a replica that holds a copy unless forced, then replaces it whole', async () => {
    const fx = await sourceFixture()
    await fx.write(10, 1, 5)
    const first = await exportToBuffer(fx.local, fx)
    await fx.write(10, 1, 50)
    const second = await exportToBuffer(fx.local, fx)
    const store = fx.openReplicaStore(fx.replicaPath())
    await importExport({ open: input(first.file), store, source: fx.local.description })
    const before = await replicaState(store, fx.feed)
    await assert.rejects(importExport({ open: input(second.file), store, source: fx.local.description }), (e: unknown) => {
      assert.ok(e instanceof ConflictError)
      assert.match(e.message, /already holds a copy \(\d+ keys at seq \d+ of epoch \w+\): importing would replace it; pass --force/)
      return true
    })
    assert.deepEqual(await replicaState(store, fx.feed), before)
    const result = await importExport({ open: input(second.file), store, source: fx.local.description, force: true })
    assert.equal(result.state.seq, second.header.position)
    assert.deepEqual(await replicaState(store, fx.feed), await stateAt(fx, second.header.position))
    await store.close()
  })

  it('refuses a replica bound to another feed or source, and a file of another feed when one is expected', async () => {
    const fx = await sourceFixture()
    await fx.write(5)
    const { file } = await exportToBuffer(fx.local, fx)
    const store = fx.openReplicaStore(fx.replicaPath())
    await store.claim('orders', 'orders', 'http://elsewhere')
    await store.release('orders')
    await assert.rejects(importExport({ open: input(file), store, source: fx.local.description, name: 'orders' }), /copies feed "orders", not "customers": import the file under another name/)
    await store.claim(fx.feed, fx.feed, 'http://elsewhere')
    await store.release(fx.feed)
    await assert.rejects(importExport({ open: input(file), store, source: 'http://here' }), /from http:\/\/elsewhere, not from http:\/\/here: give that source/)
    await assert.rejects(importExport({ open: input(file), store, source: 'http://elsewhere', feed: 'orders' }), (e: unknown) => e instanceof ExportFileError && e.problem === 'feed')
    await store.close()
  })

  it('leaves the replica as it was when the disk fills up mid-import', async () => {
    const fx = await sourceFixture()
    await fx.write(5, 1, 5)
    const small = await exportToBuffer(fx.local, fx)
    for (let i = 0; i < 20; i++) await fx.source.write(fx.feed, Array.from({ length: 100 }, (_, j) => ({ op: 'upsert' as const, key: `big${i}-${j}`, data: 'x'.repeat(500) })))
    const big = await exportToBuffer(fx.local, fx, { snapshotChunk: 500 })
    const store = fx.openReplicaStore(fx.replicaPath())
    await importExport({ open: input(small.file), store, source: fx.local.description })
    const before = await store.state(fx.feed)
    const rows = await replicaState(store, fx.feed)
    const digest = await store.digestLeaves(fx.feed)
    // SQLite's own "database or disk is full", from a page budget just above the file's size now.
    const pages = store.db.pragma('page_count', { simple: true }) as number
    store.db.pragma(`max_page_count = ${pages + 20}`)
    await assert.rejects(importExport({ open: input(big.file), store, source: fx.local.description, force: true }), /full/)
    const after = await store.state(fx.feed)
    assert.deepEqual({ ...after, appliedAt: 0 }, { ...before, appliedAt: 0 })
    assert.equal(after?.bootstrap, null)
    assert.deepEqual(await replicaState(store, fx.feed), rows)
    assert.deepEqual(await store.digestLeaves(fx.feed), digest)
    await store.close()
  })

  it('leaves the replica as it was when the file turns out damaged while it is written', async () => {
    const fx = await sourceFixture()
    await fx.write(30)
    const { file } = await exportToBuffer(fx.local, fx)
    const store = fx.openReplicaStore(fx.replicaPath())
    const checked = await checkExport(input(file)())
    // Damaged between the check and the write: the second read notices before the swap.
    const bad = Buffer.from(file)
    bad[bad.length - 300] = (bad[bad.length - 300] as number) ^ 0x10
    await assert.rejects(importExport({ open: input(bad), store, source: fx.local.description, checked }), ExportFileError)
    const state = await store.state(fx.feed)
    assert.equal(state?.gen, 0)
    assert.equal(state?.bootstrap, null)
    assert.deepEqual(await replicaState(store, fx.feed), new Map())
    await store.close()
  })

  it('runs the projection hook on the difference at the swap, so the consumer’s tables move with the copy', async () => {
    const fx = await sourceFixture()
    await fx.write(20, 2, 10)
    const first = await exportToBuffer(fx.local, fx)
    await fx.write(20, 2, 10)
    const second = await exportToBuffer(fx.local, fx)
    const store = fx.openReplicaStore(fx.replicaPath())
    const projection = projectionHook()
    projection.install(store.db)
    const projected = () => new Map((store.db.prepare('SELECT key, value FROM projection ORDER BY key').all() as Array<{ key: string; value: string }>).map((r) => [r.key, r.value]))
    const copy = async () => new Map([...(await replicaState(store, fx.feed))].map(([k, v]) => [k, v.data]))
    await importExport({ open: input(first.file), store, source: 'x', apply: projection.hook })
    assert.deepEqual(projected(), await copy())
    await importExport({ open: input(second.file), store, source: 'x', apply: projection.hook, force: true })
    assert.deepEqual(projected(), await copy())
    await store.close()
  })

  it('signs with a key and refuses to import without the right one', async () => {
    const fx = await sourceFixture()
    await fx.write(10)
    const key = Buffer.from('k3y')
    const { file } = await exportToBuffer(fx.local, fx, { key })
    const store = fx.openReplicaStore(fx.replicaPath())
    await assert.rejects(importExport({ open: input(file), store, source: 'x', key: Buffer.from('other') }), /signature does not match/)
    assert.equal(await store.state(fx.feed), null, 'nothing was written, not even the replica’s row')
    const result = await importExport({ open: input(file), store, source: 'x', key })
    assert.equal(result.signature, 'verified')
    await store.close()
  })
})
