import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { PassThrough, Writable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import { LineWriter, OutputClosedError } from '../../src/cli/output.js'

describe('LineWriter', () => {
  it('waits for the reader when the stream is full, and loses nothing', async () => {
    const stream = new PassThrough({ highWaterMark: 1024 })
    const out = new LineWriter(stream, { chunkBytes: 256 })
    let written = 0
    const writing = (async () => {
      for (let i = 0; i < 500; i++) {
        await out.line(`line ${i} ${'x'.repeat(40)}`)
        written = i + 1
      }
      await out.flush()
    })()
    await delay(20)
    // Nobody reads yet: the writer is held back after about one buffer's worth.
    assert.ok(written > 0 && written < 100, `wrote ${written} lines into a 1 KB buffer`)
    let text = ''
    stream.setEncoding('utf8').on('data', (d: string) => (text += d))
    await writing
    const lines = text.trimEnd().split('\n')
    assert.equal(lines.length, 500)
    assert.equal(lines[499], `line 499 ${'x'.repeat(40)}`)
  })

  it('rejects with OutputClosedError once the reader has gone (EPIPE)', async () => {
    const stream = new Writable({
      highWaterMark: 16,
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
      },
    })
    const out = new LineWriter(stream, { chunkBytes: 1 })
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 100; i++) await out.line(`line ${i}`)
      })(),
      OutputClosedError,
    )
    assert.equal(out.closed, true)
    await assert.rejects(out.line('more'), OutputClosedError)
  })

  it('passes other write errors on as they are', async () => {
    const stream = new Writable({
      highWaterMark: 1,
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }))
      },
    })
    const out = new LineWriter(stream, { chunkBytes: 1 })
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 100; i++) await out.line(`line ${i}`)
      })(),
      (error: unknown) => !(error instanceof OutputClosedError) && (error as { code?: string }).code === 'ENOSPC',
    )
  })
})
