import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Backoff, sleep } from '../../src/transport/backoff.js'

describe('Backoff', () => {
  it('grows exponentially and caps, with full jitter from the injected random', () => {
    const top = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 })
    assert.deepEqual(
      Array.from({ length: 7 }, () => top.next()),
      [99, 199, 399, 799, 999, 999, 999],
    )
    assert.equal(top.attempts, 7)

    const half = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5 })
    assert.deepEqual(Array.from({ length: 6 }, () => half.next()), [50, 100, 200, 400, 500, 500])

    const zero = new Backoff({ random: () => 0 })
    assert.deepEqual(Array.from({ length: 3 }, () => zero.next()), [0, 0, 0])
  })

  it('is deterministic for a given random sequence and stays within [0, ceiling)', () => {
    const seq = (): (() => number) => {
      let x = 42
      return () => {
        x = (x * 1103515245 + 12345) % 2 ** 31
        return x / 2 ** 31
      }
    }
    const a = new Backoff({ baseMs: 10, capMs: 5000, random: seq() })
    const b = new Backoff({ baseMs: 10, capMs: 5000, random: seq() })
    const pausesA: number[] = []
    for (let i = 0; i < 40; i++) {
      const ceiling = a.ceilingMs
      const ms = a.next()
      assert.ok(ms >= 0 && ms < ceiling, `${ms} within [0, ${ceiling})`)
      pausesA.push(ms)
    }
    assert.deepEqual(Array.from({ length: 40 }, () => b.next()), pausesA)
    assert.equal(a.ceilingMs, 5000, 'capped, even after many failures (no overflow)')
  })

  it('reset() starts again from the shortest pause', () => {
    const b = new Backoff({ baseMs: 100, capMs: 10_000, random: () => 0.5 })
    b.next()
    b.next()
    b.next()
    assert.equal(b.ceilingMs, 800)
    b.reset()
    assert.equal(b.attempts, 0)
    assert.equal(b.next(), 50)
  })

  it('uses the defaults of 100 ms and 10 s', () => {
    const b = new Backoff({ random: () => 0.5 })
    assert.equal(b.baseMs, 100)
    assert.equal(b.capMs, 10_000)
    for (let i = 0; i < 20; i++) b.next()
    assert.equal(b.next(), 5000)
  })

  it('refuses bounds that make no sense', () => {
    assert.throws(() => new Backoff({ baseMs: 0 }), RangeError)
    assert.throws(() => new Backoff({ baseMs: 100, capMs: 50 }), RangeError)
  })

  it('waits through the injected sleep, passing the signal', async () => {
    const calls: Array<[number, AbortSignal | undefined]> = []
    const b = new Backoff({ baseMs: 100, random: () => 0.5, sleep: async (ms, signal) => void calls.push([ms, signal]) })
    const signal = new AbortController().signal
    assert.equal(await b.wait(signal), 50)
    assert.equal(await b.wait(signal), 100)
    await b.sleep(7)
    assert.deepEqual(calls, [[50, signal], [100, signal], [7, undefined]])
  })

  it('sleep() resolves on time and rejects at once with the abort reason', async () => {
    const started = Date.now()
    await sleep(20)
    assert.ok(Date.now() - started >= 15)

    const controller = new AbortController()
    const reason = new Error('stop')
    const pending = sleep(60_000, controller.signal)
    setTimeout(() => controller.abort(reason), 5)
    const t0 = Date.now()
    await assert.rejects(pending, (e) => e === reason)
    assert.ok(Date.now() - t0 < 1000)

    await assert.rejects(sleep(10, AbortSignal.abort(reason)), (e) => e === reason)
    await assert.rejects(new Backoff().sleep(60_000, AbortSignal.abort(reason)), (e) => e === reason)
  })
})
