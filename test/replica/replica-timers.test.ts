import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createReplica } from '../../src/replica/replica.js'
import type { Timers } from '../../src/util/life-cycle.js'
import { sourceFixture } from '../helpers/replica-fixture.js'

/** Timers that record what is set and cleared; timeouts fire only when the test says so. */
function fakeTimers() {
  let next = 1
  const live = new Map<number, { kind: 'timeout' | 'interval'; ms: number; fn: () => void }>()
  const timers: Timers = {
    setTimeout: (fn, ms) => {
      const id = next++
      live.set(id, { kind: 'timeout', ms, fn })
      return id
    },
    clearTimeout: (id) => void live.delete(id as number),
    // Intervals run on real timers (lease renewals, polls) but are tracked, so the test sees them cleared.
    setInterval: (fn, ms) => {
      const id = next++
      const real = setInterval(fn, Math.min(ms, 50))
      live.set(id, { kind: 'interval', ms, fn: () => clearInterval(real) })
      return id
    },
    clearInterval: (id) => {
      const t = live.get(id as number)
      if (t?.kind === 'interval') t.fn()
      live.delete(id as number)
    },
  }
  return {
    timers,
    live,
    /** Fires the pending timeouts set for at least `ms`. */
    fire(ms: number): number {
      let fired = 0
      for (const [id, t] of [...live]) {
        if (t.kind === 'timeout' && t.ms >= ms) {
          live.delete(id)
          t.fn()
          fired++
        }
      }
      return fired
    },
  }
}

describe('replica timers', () => {
  it('runs its schedule on the injected timers, and clears every timer it set when it stops', async () => {
    const fx = await sourceFixture()
    await fx.write(20, 2)
    const store = fx.openReplicaStore(fx.replicaPath())
    const clock = fakeTimers()
    const replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      timers: clock.timers,
      reconcile: { everyMs: 3_600_000, jitter: 0, mode: 'verify' },
    })
    const running = replica.run()
    await replica.caughtUp()
    // caughtUp() can answer before the follow session has armed its timers.
    const isHourly = (t: { kind: string; ms: number }) => t.kind === 'timeout' && t.ms > 3_500_000 && t.ms <= 3_600_000
    for (let i = 0; i < 200 && ![...clock.live.values()].some(isHourly); i++) await new Promise((r) => setTimeout(r, 10))
    const kinds = [...clock.live.values()].map((t) => `${t.kind}:${t.ms}`)
    assert.ok(kinds.includes('interval:5000'), `the lease is renewed at a third of 15 s on the injected timers (${kinds.join(', ')})`)
    // The wait is the hour less the few ms since run() planned it.
    const hourly = [...clock.live.values()].filter(isHourly)
    assert.equal(hourly.length, 1, `the hourly run waits on the injected timers (${kinds.join(', ')})`)
    assert.equal(replica.status().lastRun, null)
    // An hour passes at once: the scheduled run happens now, not in an hour.
    assert.equal(clock.fire(3_500_000), 1)
    for (let i = 0; i < 200 && replica.status().lastRun === null; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(replica.status().lastRun?.trigger, 'schedule')
    assert.equal(replica.status().lastRun?.outcome, 'intact')
    await replica.caughtUp()
    await replica.stop()
    await running
    assert.deepEqual([...clock.live.values()].map((t) => `${t.kind}:${t.ms}`), [], 'nothing left set after stop()')
    store.close()
  })
})
