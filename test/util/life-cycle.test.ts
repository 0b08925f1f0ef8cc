import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConflictError } from '../../src/errors.js'
import { LifeCycle } from '../../src/util/life-cycle.js'
import { PositionWaiters } from '../../src/util/position-waiters.js'

function until(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
}

describe('life cycle', () => {
  it('runs one loop at a time; stop() aborts it and resolves once it has ended', async () => {
    const life = new LifeCycle('thing')
    let ended = false
    const running = life.start(undefined, async (signal) => {
      await until(signal)
      await new Promise((r) => setTimeout(r, 20))
      ended = true
    })
    assert.equal(life.running, true)
    assert.throws(() => life.start(undefined, async () => {}), (e: unknown) => e instanceof ConflictError && /thing is already running/.test(e.message))
    await life.stop()
    assert.equal(ended, true, 'stop waited for the loop')
    assert.equal(life.running, false)
    await running
    await life.start(undefined, async () => {})
  })

  it("follows the caller's signal, already aborted or aborted later, and forgets it afterwards", async () => {
    const life = new LifeCycle('thing')
    const early = new AbortController()
    early.abort(new Error('before'))
    let seen: unknown
    await life.start(early.signal, async (signal) => {
      seen = signal.reason
    })
    assert.match((seen as Error).message, /before/)
    const later = new AbortController()
    const running = life.start(later.signal, (signal) => until(signal))
    later.abort(new Error('later'))
    await running
    assert.equal(life.running, false)
  })

  it('abort() ends the loop from inside with its reason', async () => {
    const life = new LifeCycle('thing')
    const running = life.start(undefined, async (signal) => {
      await until(signal)
      throw signal.reason
    })
    life.abort(new Error('lease lost'))
    await assert.rejects(running, /lease lost/)
  })
})

describe('position waiters', () => {
  it('resolves each waiter once its position is reached, in any order', async () => {
    const w = new PositionWaiters()
    const done: number[] = []
    const a = w.wait(5).then(() => done.push(5))
    const b = w.wait(2).then(() => done.push(2))
    w.settle(3)
    await b
    assert.deepEqual(done, [2])
    w.settle(5)
    await a
    assert.deepEqual(done, [2, 5])
  })

  it('rejects with the signal and drops the waiter; rejectAll rejects the rest', async () => {
    const w = new PositionWaiters()
    const c = new AbortController()
    const aborted = w.wait(10, c.signal)
    c.abort(new Error('timed out'))
    await assert.rejects(aborted, /timed out/)
    const left = w.wait(10)
    w.rejectAll(new Error('stopped'))
    await assert.rejects(left, /stopped/)
    w.settle(100) // nothing left to resolve, nothing throws
  })
})
