// The regression gate's rules: which way a figure improves, when a change is a REGRESSION, how a
// re-run confirms one, and how baseline files are kept. No speed is asserted here.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { bestOf, compareRun, formatComparison, machineMismatch, readBaseline, writeBaseline, type BaselineRun } from '../../bench/baselines.js'
import { atLeast, atMost, machine, makeFigure, type Figure, type FigureInput } from '../../bench/harness.js'
import { tmpDir } from '../helpers/tmp.js'

const rate = (value: number, baseline = 100, extra: Partial<FigureInput> = {}): Figure =>
  makeFigure('s', { figure: 'rate', value, unit: 'rows/s', baseline: { name: 'raw', value: baseline }, target: atLeast(0.5, '≥ 0.5×'), ...extra })
const cost = (value: number): Figure =>
  makeFigure('s', { figure: 'cost', value, unit: 'rows/s', baseline: { name: 'plain', value: 100 }, ratio: 'baseline/value', target: atMost(1.5, '≤ 1.5× cost') })
const run = (figures: Figure[]): BaselineRun => ({ commit: 'abc', date: '2026-12-02T00:00:00.000Z', machine: machine(), figures })

describe('bench baselines', () => {
  it('takes which way a figure improves from its target, or from what it says, else leaves it informational', () => {
    assert.equal(rate(50).better, 'higher')
    assert.equal(cost(50).better, 'lower')
    // A target on the value of a cost ratio: the ratio improves the other way.
    const onValue = makeFigure('s', { figure: 'x', value: 5, unit: 'rows/s', baseline: { name: 'b', value: 10 }, ratio: 'baseline/value', target: atLeast(4, '≥ 4 rows/s', 'value') })
    assert.equal(onValue.better, 'lower')
    assert.equal(makeFigure('s', { figure: 'x', value: 5, unit: 'ms', better: 'lower' }).better, 'lower')
    assert.equal(makeFigure('s', { figure: 'x', value: 5, unit: 'ms' }).better, null)
  })

  it('marks a ratio 15 % or more worse a REGRESSION, either way round, and says which got better', () => {
    const committed = run([rate(50), cost(50)]) // ratios 0.5 (higher better) and 2.0 (lower better)
    const verdicts = (figs: Figure[]) => compareRun(figs, committed).map((r) => [r.figure, r.verdict])
    assert.deepEqual(verdicts([rate(42), cost(50)]), [['rate', 'REGRESSION'], ['cost', 'ok']]) // 0.42 ≤ 0.85 × 0.5
    assert.deepEqual(verdicts([rate(44), cost(50)]), [['rate', 'ok'], ['cost', 'ok']])
    assert.deepEqual(verdicts([rate(50), cost(43)]), [['rate', 'ok'], ['cost', 'REGRESSION']]) // cost 2.33 ≥ 1.15 × 2
    assert.deepEqual(verdicts([rate(60), cost(60)]), [['rate', 'better'], ['cost', 'better']])
    const [row] = compareRun([rate(40)], committed)
    assert.equal(row?.on, 'ratio')
    assert.ok(Math.abs((row?.score ?? 0) - 0.8) < 1e-9)
  })

  it('compares the value of a figure without a same-run baseline, and never judges an informational one', () => {
    const bytes = (v: number) => makeFigure('s', { figure: 'bytes', value: v, unit: 'B', target: atMost(2048, '< 2 KB', 'value') })
    const info = (v: number) => makeFigure('s', { figure: 'info', value: v, unit: 'ms', baseline: { name: 'b', value: 1 } })
    const rows = compareRun([bytes(1300), info(100)], run([bytes(1000), info(1)]))
    assert.deepEqual(rows.map((r) => [r.figure, r.on, r.verdict]), [['bytes', 'value', 'REGRESSION'], ['info', 'ratio', 'info']])
  })

  it('reports figures new today and figures the committed run had that today lacks', () => {
    const other = makeFigure('s', { figure: 'gone', value: 1, unit: 'ms', better: 'lower' })
    const rows = compareRun([rate(50)], run([other]))
    assert.deepEqual(rows.map((r) => [r.figure, r.verdict]), [['rate', 'new'], ['gone', 'missing']])
    assert.deepEqual(compareRun([rate(50)], undefined).map((r) => r.verdict), ['new'])
    assert.match(formatComparison(rows), /gone .*missing/)
  })

  it('keeps the best of several runs of a figure, so that a regression must show in every run', () => {
    const best = bestOf([[rate(40), cost(60)], [rate(55), cost(40)]])
    assert.deepEqual(best.map((f) => [f.figure, f.value]), [['rate', 55], ['cost', 60]])
    const committed = run([rate(50), cost(50)])
    assert.ok(compareRun(bestOf([[rate(40)], [rate(41)]]), committed).some((r) => r.verdict === 'REGRESSION'))
    assert.ok(!compareRun(bestOf([[rate(40)], [rate(49)]]), committed).some((r) => r.verdict === 'REGRESSION'))
  })

  it('writes one file per suite with a section per mode, and rewrites one mode without touching the other', () => {
    const dir = join(tmpDir(), 'baselines')
    writeBaseline(dir, 'replica', 'full', run([rate(50)]))
    writeBaseline(dir, 'replica', 'quick', run([rate(40)]))
    writeBaseline(dir, 'replica', 'full', { ...run([rate(45)]), commit: 'def' })
    const file = readBaseline(dir, 'replica')
    assert.equal(file?.full?.commit, 'def')
    assert.equal(file?.full?.figures[0]?.value, 45)
    assert.equal(file?.quick?.figures[0]?.value, 40)
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(dir, 'replica.json'), 'utf8')) as object), ['suite', 'full', 'quick'])
    assert.equal(readBaseline(dir, 'nope'), undefined)
  })

  it('says when the committed run was measured on another machine', () => {
    const m = machine()
    assert.equal(machineMismatch(m, m), undefined)
    assert.match(machineMismatch({ ...m, cpus: m.cpus + 2 }, m) ?? '', /cores/)
  })
})
