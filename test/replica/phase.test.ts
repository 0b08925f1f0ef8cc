import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { PhaseMachine, TRANSITIONS, type Phase } from '../../src/replica/phase.js'

function machineAt(path: Phase[]): PhaseMachine {
  const m = new PhaseMachine()
  for (const p of path) m.to(p, 'test')
  return m
}

// A route from idle to each phase, using only allowed transitions.
const ROUTE: Record<Phase, Phase[]> = {
  idle: [],
  bootstrapping: ['bootstrapping'],
  'catching-up': ['catching-up'],
  live: ['catching-up', 'live'],
  reconciling: ['catching-up', 'reconciling'],
  stopped: ['stopped'],
  failed: ['failed'],
}

describe('replica phases', () => {
  for (const [from, tos] of Object.entries(TRANSITIONS) as Array<[Phase, Phase[]]>) {
    for (const to of tos) {
      it(`allows ${from} → ${to}`, () => {
        const m = machineAt(ROUTE[from])
        m.to(to, 'test')
        assert.equal(m.phase, to)
      })
    }
    const all = Object.keys(TRANSITIONS) as Phase[]
    for (const to of all.filter((p) => !tos.includes(p) && p !== from)) {
      it(`refuses ${from} → ${to}`, () => {
        const m = machineAt(ROUTE[from])
        assert.throws(() => m.to(to, 'test'), /illegal phase transition/)
      })
    }
  }

  it('documents exactly the transitions the code allows', () => {
    const doc = readFileSync('docs/replica.md', 'utf8')
    const documented = new Set<string>()
    for (const m of doc.matchAll(/^\|\s*`([a-z-]+)`\s*\|\s*`([a-z-]+)`\s*\|/gm)) documented.add(`${m[1]}→${m[2]}`)
    const coded = new Set(Object.entries(TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}→${to}`)))
    assert.deepEqual([...documented].sort(), [...coded].sort())
  })
})
