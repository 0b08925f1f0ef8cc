import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { describeProgress, progressLine } from '../../src/cli/progress.js'

function stream(isTTY: boolean) {
  const writes: string[] = []
  return { isTTY, writes, write: (text: string) => (writes.push(text), true) }
}

describe('progress line', () => {
  it('says nothing when stderr is not a terminal', () => {
    const s = stream(false)
    const p = progressLine('export customers', s)
    p.update('reading', 10, 100)
    p.done()
    assert.deepEqual(s.writes, [])
  })

  it('redraws one line on a terminal, at most every everyMs, and clears it when done', () => {
    const s = stream(true)
    let t = 0
    const p = progressLine('export customers', s, { everyMs: 250, now: () => t })
    p.update('reading', 0, 1000)
    t = 100
    p.update('reading', 100, 1000) // too soon
    t = 1000
    p.update('reading', 500, 1000)
    t = 1010
    p.update('writing', 1, 1000) // a new phase is drawn at once
    p.done()
    assert.deepEqual(s.writes, [
      '\r\x1b[Kexport customers, reading: 0 / 1,000 rows',
      '\r\x1b[Kexport customers, reading: 500 / 1,000 rows · 500 rows/s · 1 s left',
      '\r\x1b[Kexport customers, writing: 1 / 1,000 rows',
      '\r\x1b[K',
    ])
  })

  it('tells rate and time left once there is a rate', () => {
    assert.equal(describeProgress('import f', 'writing', 412_000, 1_000_000, 4_000), 'import f, writing: 412,000 / 1,000,000 rows · 103,000 rows/s · 5.7 s left')
    assert.equal(describeProgress('import f', 'writing', 10, 0, 100), 'import f, writing: 10 rows')
  })
})
