// The README's figures table against the committed baselines: it is generated from them, and this
// test fails when someone edits the table by hand or commits a baseline without regenerating it.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { BASELINE_DIR, readBaseline, writeBaseline } from '../../bench/baselines.js'
import { machine, makeFigure } from '../../bench/harness.js'
import { BEGIN, END, README_PATH, renderFigures, withFigures } from '../../bench/readme-figures.js'
import { SUITES } from '../../bench/suites/index.js'
import { tmpDir } from '../helpers/tmp.js'

describe('README figures', () => {
  it('every bench suite has a committed full and quick baseline', () => {
    for (const suite of SUITES) {
      const file = readBaseline(BASELINE_DIR, suite.name)
      assert.ok(file?.full, `bench/baselines/${suite.name}.json has no full run: npm run bench -- --only ${suite.name} --update-baseline`)
      assert.ok(file?.quick, `bench/baselines/${suite.name}.json has no quick run: npm run bench -- --quick --only ${suite.name} --update-baseline`)
    }
  })

  it('the README table is exactly the one the committed baselines give', () => {
    const readme = readFileSync(README_PATH, 'utf8')
    assert.ok(readme.includes(BEGIN) && readme.includes(END), 'README.md has no generated figures block')
    const block = readme.slice(readme.indexOf(BEGIN) + BEGIN.length, readme.indexOf(END)).trim()
    assert.equal(block, renderFigures(BASELINE_DIR), 'README.md figures differ from bench/baselines: run the bench with --update-baseline, or fix bench/readme-figures.ts')
    assert.ok(!block.includes('not measured'), 'a README row has no committed baseline behind it')
  })

  it('says which figure is missing rather than printing a stale or empty cell', () => {
    const dir = tmpDir('readme-figures')
    const figure = makeFigure('replica', { figure: 'something else', value: 1, unit: 'rows/s' })
    writeBaseline(dir, 'replica', 'full', { commit: 'abc', date: '2026-12-03T00:00:00.000Z', machine: machine(), figures: [figure] })
    assert.throws(() => renderFigures(dir), /has no figure "bootstrap over HTTP \(1,000,000 rows\)"/)
    // Suites with no baseline at all are named, not silently dropped.
    const empty = tmpDir('readme-figures-empty')
    assert.match(renderFigures(empty), /not measured: no committed baseline of suite source/)
  })

  it('replaces only what lies between the markers', () => {
    const readme = `# x\n\nbefore\n${BEGIN}\nold table\n${END}\nafter\n`
    assert.equal(withFigures(readme, 'new'), `# x\n\nbefore\n${BEGIN}\nnew\n${END}\nafter\n`)
    assert.throws(() => withFigures('# no block\n', 'new'), /has no figures block/)
  })
})
