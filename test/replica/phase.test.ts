import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { ApplyFailedError, ConflictError, EpochChangedError, HistoryRewoundError, LogTruncatedError, TidemarkError } from '../../src/errors.js'
import { EVENT_KINDS, PHASES, PHASE_TABLE, PhaseMachine, TRANSITIONS, renderPhaseTable, type EventKind, type Phase } from '../../src/replica/phase.js'
import { classify } from '../../src/replica/replica.js'

// Events that bring a new machine from idle to each phase.
const ROUTE: Record<Phase, EventKind[]> = {
  idle: [],
  bootstrapping: ['copy-missing'],
  'catching-up': ['copy-found'],
  live: ['copy-found', 'at-head'],
  reconciling: ['copy-found', 'run-due'],
  stopped: ['stop'],
  failed: ['fatal'],
}

function machineAt(phase: Phase): PhaseMachine {
  const m = new PhaseMachine()
  for (const kind of ROUTE[phase]) m.dispatch(kind, 'test')
  assert.equal(m.phase, phase)
  return m
}

describe('replica phases', () => {
  it('lists every phase and every event of the table, once', () => {
    assert.deepEqual([...PHASES].sort(), Object.keys(PHASE_TABLE).sort())
    for (const phase of PHASES) assert.deepEqual([...EVENT_KINDS].sort(), Object.keys(PHASE_TABLE[phase]).sort(), phase)
    assert.equal(new Set(EVENT_KINDS).size, EVENT_KINDS.length)
  })

  for (const phase of PHASES) {
    for (const kind of EVENT_KINDS) {
      const outcome = PHASE_TABLE[phase][kind]
      it(`${phase} + ${kind} → ${outcome}`, () => {
        const m = machineAt(phase)
        const before = m.history.length
        if (outcome === 'illegal') {
          assert.throws(() => m.dispatch(kind, 'test'), new RegExp(`event ${kind} cannot happen while ${phase}`))
          assert.equal(m.phase, phase)
          return
        }
        const changes: string[] = []
        const observed = new PhaseMachine((c) => changes.push(`${c.from}→${c.to}:${c.event}`))
        for (const k of ROUTE[phase]) observed.dispatch(k, 'route')
        changes.length = 0
        observed.dispatch(kind, 'test')
        m.dispatch(kind, 'test')
        if (outcome === 'stay') {
          assert.equal(m.phase, phase)
          assert.equal(m.history.length, before, 'staying records no change')
          assert.deepEqual(changes, [])
        } else {
          assert.equal(m.phase, outcome)
          assert.equal(m.history.at(-1)?.event, kind)
          assert.deepEqual(changes, [`${phase}→${outcome}:${kind}`])
        }
      })
    }
  }

  it('documents exactly the transitions the table allows', () => {
    const doc = readFileSync('docs/replica.md', 'utf8')
    const documented = new Set<string>()
    for (const m of doc.matchAll(/^\|\s*`([a-z-]+)`\s*\|\s*`([a-z-]+)`\s*\|/gm)) documented.add(`${m[1]}→${m[2]}`)
    const coded = new Set(Object.entries(TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}→${to}`)))
    assert.deepEqual([...documented].sort(), [...coded].sort())
  })

  it("shows the code's table in docs/replica.md", () => {
    const doc = readFileSync('docs/replica.md', 'utf8')
    const block = /<!-- BEGIN phase table[^>]*-->\n([\s\S]*?)\n<!-- END phase table -->/.exec(doc)
    assert.ok(block, 'docs/replica.md has the phase table markers')
    assert.equal(block[1], renderPhaseTable(), 'regenerate it: node --import tsx -e "import(\'./src/replica/phase.ts\').then(m => console.log(m.renderPhaseTable()))"')
  })

  it('classifies errors into the events the table knows', () => {
    assert.equal(classify(new ApplyFailedError(3, 'k', new Error('x'))), 'fatal')
    assert.equal(classify(new ConflictError('claimed elsewhere')), 'fatal')
    assert.equal(classify(new TidemarkError('unauthorized', 'no')), 'fatal')
    assert.equal(classify(new TidemarkError('unknown-feed', 'no')), 'fatal')
    assert.equal(classify(new EpochChangedError('f', 'a', 'b')), 'epoch-changed')
    assert.equal(classify(new HistoryRewoundError('f', 1, 2)), 'history-rewound')
    assert.equal(classify(new LogTruncatedError('f', 1, 10)), 'log-truncated')
    assert.equal(classify(new TidemarkError('store-unavailable', 'down')), 'transient')
    assert.equal(classify(new Error('ECONNRESET')), 'transient')
  })
})
