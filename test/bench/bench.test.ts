// The benchmark harness runs end to end in quick mode. Nothing here looks at speed: the machine
// is shared and noisy, so timings belong in the bench's own table, never in a test's verdict.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { formatTable, makeFigure, percentile, type BenchResult } from '../../bench/harness.js'
import { SUITES } from '../../bench/suites/index.js'
import { EXIT } from '../../src/errors.js'
import { tmpDir } from '../helpers/tmp.js'

async function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code, stdout, stderr }
}

describe('bench', () => {
  it('runs every suite in quick mode, prints the table and writes every figure with finite numbers', { timeout: 180_000 }, async () => {
    const json = join(tmpDir(), 'out', 'bench.json')
    const { code, stdout, stderr } = await runBench(['--quick', '--json', json])
    assert.equal(code, 0, `bench exited with ${code}:\n${stderr}`)

    const result = JSON.parse(readFileSync(json, 'utf8')) as BenchResult
    assert.equal(result.quick, true)
    assert.deepEqual(result.suites.map((s) => [s.name, s.error]), SUITES.map((s) => [s.name, undefined]))
    assert.ok(result.figures.length > 0)
    for (const f of result.figures) {
      const what = `${f.suite}: ${f.figure}`
      assert.ok(Number.isFinite(f.value) && f.value > 0, `${what}: value ${f.value}`)
      assert.ok(f.unit.length > 0, `${what}: no unit`)
      if (f.baseline !== null) {
        assert.ok(Number.isFinite(f.baselineValue) && (f.baselineValue as number) > 0, `${what}: baseline ${f.baselineValue}`)
        assert.ok(Number.isFinite(f.ratio), `${what}: ratio ${f.ratio}`)
      }
      if (f.target !== null) {
        assert.ok(f.check && Number.isFinite(f.check.limit), `${what}: target without a check`)
        assert.equal(typeof f.pass, 'boolean', `${what}: pass`)
      }
      assert.ok(stdout.includes(f.figure), `${what}: not in the printed table`)
    }
    const header = stdout.split('\n').find((l) => l.startsWith('figure'))
    assert.ok(header, 'no table header on stdout')
    assert.match(header, /^figure\s+\| +value \| baseline\s+\| +ratio \| target\s+\| ok$/)

    const source = result.figures.filter((f) => f.suite === 'source').map((f) => f.figure)
    for (const part of ['owner writes, 1-row tx: table capture', 'indexer', 'changes read over HTTP', 'long-poll wake-up p99', 'row hash: sha256', '2^20 buckets']) {
      assert.ok(source.some((name) => name.includes(part)), `no source figure about "${part}"`)
    }
  })

  it(`refuses an unknown suite and bad flags with the CLI's usage exit code (${EXIT.usage})`, async () => {
    const unknown = await runBench(['--only', 'nope'])
    assert.equal(unknown.code, EXIT.usage)
    assert.match(unknown.stderr, /no suite named nope/)
    const bad = await runBench(['--fast'])
    assert.equal(bad.code, EXIT.usage)
  })

  it('computes ratios, costs and targets, and aligns the table', () => {
    const cost = makeFigure('s', {
      figure: 'capture',
      value: 50,
      unit: 'rows/s',
      baseline: { name: 'plain', value: 100 },
      ratio: 'baseline/value',
      target: { text: '≤ 1.5× cost', on: 'ratio', op: '<=', limit: 1.5 },
    })
    assert.equal(cost.ratio, 2)
    assert.equal(cost.pass, false)
    const rate = makeFigure('s', { figure: 'http', value: 60, unit: 'changes/s', baseline: { name: 'sqlite', value: 100 }, target: { text: '≥ 0.5×', on: 'ratio', op: '>=', limit: 0.5 } })
    assert.equal(rate.ratio, 0.6)
    assert.equal(rate.pass, true)
    const bare = makeFigure('t', { figure: 'alone', value: 3, unit: 'ms' })
    assert.equal(bare.ratio, null)
    assert.equal(bare.pass, null)
    const lines = formatTable([cost, rate, bare]).split('\n')
    assert.deepEqual(lines.filter((l) => l.startsWith('[')), ['[s]', '[t]'])
    const rows = lines.filter((l) => l.includes(' | '))
    const bars = (l: string) => [...l.matchAll(/ \| /g)].map((m) => m.index)
    for (const row of rows.slice(1)) assert.deepEqual(bars(row).slice(0, 3), bars(rows[0] as string).slice(0, 3))
    assert.match(lines.join('\n'), /2\.00× cost .*\| NO/)
  })

  it('interpolates percentiles', () => {
    assert.equal(percentile([3, 1, 2], 50), 2)
    assert.equal(percentile([1, 2, 3, 4], 50), 2.5)
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 9.91)
  })
})

describe('bench harness: child processes', () => {
  it('reports a child process’s peak RSS and output, and cleans its temporary folders', async () => {
    const { TempDirs, runNodeChild } = await import('../../bench/harness.js')
    const { existsSync } = await import('node:fs')
    const temp = new TempDirs()
    after(() => temp.cleanup())
    const run = await runNodeChild(temp, { args: ['-e', 'const b = Buffer.alloc(64 * 2 ** 20, 1); console.log(b.length)'] })
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout.trim(), String(64 * 2 ** 20))
    assert.ok(run.peakRssBytes >= 64 * 2 ** 20, `peak RSS ${run.peakRssBytes}`)
    const dir = temp.make()
    temp.cleanup()
    assert.equal(existsSync(dir), false)
  })
})
