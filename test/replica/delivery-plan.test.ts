import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { planDelivery } from '../../src/replica/delivery-plan.js'
import type { Change } from '../../src/protocol/types.js'

const c = (seq: number, tx = seq): Change => ({ seq, key: `k${seq}`, op: 'upsert', data: seq, tx, ts: 0 })

describe('planDelivery', () => {
  it('applies what follows on, whole transactions only', () => {
    const plan = planDelivery(3, [c(4, 5), c(5, 5), c(6)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [4, 5, 6])
    assert.equal(plan.upTo, 6)
    assert.equal(plan.gap, false)
  })
  it('drops duplicates at or below the checkpoint', () => {
    const plan = planDelivery(5, [c(4, 5), c(5, 5), c(6)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [6])
    assert.equal(plan.duplicates, 2)
    assert.equal(plan.gap, false)
  })
  it('reports a gap and applies nothing past it', () => {
    const plan = planDelivery(3, [c(4), c(6), c(7)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [4])
    assert.equal(plan.upTo, 4)
    assert.equal(plan.gap, true)
    assert.equal(plan.highest, 7)
  })
  it('treats a reordering as a gap', () => {
    const plan = planDelivery(0, [c(2), c(1)])
    assert.deepEqual(plan.apply, [])
    assert.equal(plan.gap, true)
    assert.equal(plan.highest, 2)
  })
  it('counts a repeat inside the delivery as a duplicate, never applying it twice, and goes on after it', () => {
    // A redelivered message merged with its first delivery: no gap, nothing to pull.
    const plan = planDelivery(0, [c(1), c(2), c(1), c(2), c(3)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [1, 2, 3])
    assert.equal(plan.duplicates, 2)
    assert.equal(plan.gap, false)
    assert.equal(plan.upTo, 3)
  })
  it('still sees a gap after a repeat', () => {
    const plan = planDelivery(0, [c(1), c(1), c(3)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [1])
    assert.equal(plan.gap, true)
    assert.equal(plan.highest, 3)
  })
  it('holds back a transaction cut short and pulls the rest', () => {
    const plan = planDelivery(0, [c(1), c(2, 4), c(3, 4)])
    assert.deepEqual(plan.apply.map((x) => x.seq), [1])
    assert.equal(plan.upTo, 1)
    assert.equal(plan.gap, true)
  })
  it('rejects a change whose tx is before its own seq', () => {
    const plan = planDelivery(0, [c(1, 0)])
    assert.deepEqual(plan.apply, [])
    assert.equal(plan.gap, true)
  })
})
