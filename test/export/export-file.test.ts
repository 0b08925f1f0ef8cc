import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EXPORT_FORMAT, EXPORT_VERSION, ExportFileError, TRAILER_BYTES, type Compression, type ExportHeader } from '../../src/export/export-format.js'
import { openExport, type ReadExportOptions } from '../../src/export/export-reader.js'
import { writeExport } from '../../src/export/export-writer.js'
import { StoredRow } from '../../src/protocol/encoded.js'

const KEY = Buffer.from('a shared secret')

function header(rows: number, options: { signed?: boolean; compression?: Compression } = {}): ExportHeader {
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    feed: 'customers',
    epoch: 'e1',
    position: 1000,
    rows,
    createdAt: '2026-11-25T15:00:00.000Z',
    source: 'http://127.0.0.1:7480',
    compression: options.compression ?? 'br',
    checksum: 'sha256',
    signature: options.signed ? 'hmac-sha256' : null,
  }
}

function rowsOf(n: number): StoredRow[] {
  // Data text kept as stored, spacing and number forms included: it must come back byte for byte.
  return Array.from({ length: n }, (_, i) => new StoredRow(`k${String(i).padStart(5, '0')}`, i + 1, `{"n": ${i}, "x":1.50, "s":"\\u00e9"}`))
}

async function* inBatches<T>(items: T[], size = 7): AsyncGenerator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size)
}

async function write(n: number, options: { signed?: boolean; compression?: Compression } = {}): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const b of writeExport(header(n, options), inBatches(rowsOf(n)), options.signed ? { key: KEY } : {})) parts.push(b)
  return Buffer.concat(parts)
}

async function* chunks(file: Buffer, size = 100): AsyncGenerator<Buffer> {
  for (let i = 0; i < file.length; i += size) yield file.subarray(i, i + size)
}

async function read(file: Buffer, options: ReadExportOptions = {}) {
  const reader = await openExport(chunks(file), options)
  const rows: StoredRow[] = []
  for (;;) {
    const r = await reader.rows.next()
    if (r.done) return { header: reader.header, rows, result: r.value }
    rows.push(...r.value)
  }
}

async function rejects(file: Buffer, problem: RegExp, options: ReadExportOptions = {}): Promise<ExportFileError> {
  try {
    await read(file, options)
  } catch (error) {
    assert.ok(error instanceof ExportFileError, `not an ExportFileError: ${String(error)}`)
    assert.match(error.problem, problem, error.message)
    return error
  }
  assert.fail(`accepted a file that should be refused (${problem})`)
}

describe('export file format', () => {
  for (const compression of ['br', 'gzip'] as const) {
    it(`round-trips rows byte for byte, in key order, with counts and checksum (${compression})`, async () => {
      const file = await write(123, { compression })
      assert.equal(file.subarray(file.length - TRAILER_BYTES).at(-1), 0x0a)
      const { header: h, rows, result } = await read(file, { batchRows: 10 })
      assert.equal(h.rows, 123)
      assert.deepEqual(rows.map((r) => [r.key, r.seq, r.dataText]), rowsOf(123).map((r) => [r.key, r.seq, r.dataText]))
      assert.equal(result.trailer.rows, 123)
      assert.equal(result.signature, 'unsigned')
    })
  }

  it('writes and reads an empty feed', async () => {
    const { rows, result } = await read(await write(0))
    assert.deepEqual(rows, [])
    assert.equal(result.trailer.rows, 0)
  })

  it('verifies a signature with the key, and reads a signed file without one as not verified', async () => {
    const file = await write(20, { signed: true })
    assert.equal((await read(file, { key: KEY })).result.signature, 'verified')
    assert.equal((await read(file)).result.signature, 'not-verified')
  })

  it('refuses a wrong key, and an unsigned file when a signature is demanded', async () => {
    const signed = await write(20, { signed: true })
    const e = await rejects(signed, /^signature$/, { key: Buffer.from('another key') })
    assert.match(e.message, /signature does not match/)
    const unsigned = await write(20)
    const u = await rejects(unsigned, /^unsigned$/, { key: KEY })
    assert.match(u.message, /not signed, and a signature is demanded/)
  })

  it('refuses a file whose signature was stripped and checksum recomputed, when a key is given', async () => {
    // What an attacker who changed rows could do without the key: write an unsigned file.
    const forged = await write(20)
    await rejects(forged, /^unsigned$/, { key: KEY })
  })

  it('refuses a file of another feed when the feed is given', async () => {
    const e = await rejects(await write(5), /^feed$/, { feed: 'orders' })
    assert.match(e.message, /holds feed "customers", not "orders"/)
  })

  it('refuses another format version, saying whether to upgrade', async () => {
    const file = await write(5)
    const newer = Buffer.from(file.toString('latin1').replace(`"version":${EXPORT_VERSION}`, '"version":2'), 'latin1')
    const e = await rejects(newer, /^version$/)
    assert.match(e.message, /format version 2; this tidemark reads version 1: upgrade tidemark/)
  })

  it('refuses what is not an export at all', async () => {
    await rejects(Buffer.from('id,name\n1,Ada\n'), /^not-an-export$/)
    await rejects(Buffer.from('{"hello":"world"}\nmore'), /^not-an-export$/)
    await rejects(Buffer.alloc(0), /^truncated$/)
  })

  it('refuses a file cut short anywhere: in the header, the rows or the trailer', async () => {
    const file = await write(200)
    const headerEnd = file.indexOf(0x0a)
    const cuts = [1, 20, headerEnd, headerEnd + 1, headerEnd + 5, Math.floor(file.length / 2), file.length - TRAILER_BYTES - 1, file.length - TRAILER_BYTES, file.length - 100, file.length - 1]
    for (const cut of cuts) {
      const e = await rejects(file.subarray(0, cut), /^truncated$/)
      assert.match(e.message, /cut short/, `cut at ${cut} of ${file.length}: ${e.message}`)
    }
  })

  it('refuses a file with any one byte flipped, wherever it is', async () => {
    for (const signed of [false, true]) {
      const file = await write(40, { signed })
      for (let i = 0; i < file.length; i++) {
        const bad = Buffer.from(file)
        bad[i] = (bad[i] as number) ^ (1 << i % 8)
        try {
          await read(bad, signed ? { key: KEY } : {})
        } catch (error) {
          assert.ok(error instanceof ExportFileError, `byte ${i}: ${String(error)}`)
          continue
        }
        assert.fail(`a flip of byte ${i} of ${file.length} went unnoticed`)
      }
    }
  })

  it('refuses rows out of key order or above the position even with a valid checksum', async () => {
    const h = header(2)
    const bad = [new StoredRow('b', 1, '1'), new StoredRow('a', 2, '2')]
    const parts: Buffer[] = []
    for await (const b of writeExport(h, inBatches(bad))) parts.push(b)
    const e = await rejects(Buffer.concat(parts), /^damaged$/)
    assert.match(e.message, /not after key "b"/)
    const high: Buffer[] = []
    for await (const b of writeExport(header(1), inBatches([new StoredRow('a', 1001, '1')]))) high.push(b)
    assert.match((await rejects(Buffer.concat(high), /^damaged$/)).message, /above the file's position 1000/)
  })
})
