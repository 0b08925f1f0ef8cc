/**
 * `npm run bench` — tidemark's benchmarks (docs/bench.md says what each figure means).
 *
 *   node --expose-gc build/bench/main.js [--quick] [--json <path>] [--only <suite,…>]
 *                                       [--compare [--confirm N]] [--update-baseline]
 *
 * Prints one table (figure | value | baseline | ratio | target | ok) on stdout, progress on
 * stderr, and writes every figure to a JSON file. With `--compare`, also each figure beside the
 * committed baseline (bench/baselines/), REGRESSION where it got 15 % or more worse. Exit codes:
 * 0 done, 1 a suite failed to run, 64 bad usage (the CLI's EXIT.usage), 3 a regression. A missed target is reported in
 * the table ("NO"), not through the exit code.
 */
import { parseArgs } from 'node:util'
import { EXIT } from '../src/errors.js'
import {
  BASELINE_DIR,
  bestOf,
  compareRun,
  currentCommit,
  formatComparison,
  machineMismatch,
  readBaseline,
  REGRESSION_THRESHOLD,
  writeBaseline,
  type Comparison,
  type Mode,
} from './baselines.js'
import { formatTable, machine, makeFigure, nowMs, TempDirs, writeResult, type BenchResult, type Figure } from './harness.js'
import { README_PATH, updateReadmeFigures } from './readme-figures.js'
import type { BenchContext, Suite } from './suite.js'
import { SUITES } from './suites/index.js'

const USAGE = `usage: bench [--quick] [--json <path>] [--only <suite,…>] [--compare [--confirm N]] [--update-baseline]

  --quick             small sizes: the whole run in a few minutes
  --json <path>       where to write the figures (default bench-results/latest.json)
  --only <names>      run only these suites (comma-separated)
  --compare           set each figure beside the committed baseline (${BASELINE_DIR}/<suite>.json,
                      the section of this mode); exit 3 when one got 15 % or more worse
  --confirm <n>       re-run a suite that shows a regression up to n times (default 1): a
                      regression stands only when every run shows it
  --update-baseline   write this run's figures as the committed baselines (and the README's table)
  --baseline-dir <d>  where the baselines are (default ${BASELINE_DIR})

suites:
${SUITES.map((s) => `  ${s.name.padEnd(14)}${s.description}`).join('\n')}`

interface SuiteRun {
  figures: Figure[]
  ms: number
  error?: string
}

async function runSuite(suite: Suite, quick: boolean, signal: AbortSignal, temp: TempDirs): Promise<SuiteRun> {
  const started = nowMs()
  const figures: Figure[] = []
  const ctx: BenchContext = {
    quick,
    signal,
    tmpDir: (prefix) => temp.make(prefix),
    report: (input) => {
      const figure = makeFigure(suite.name, input)
      figures.push(figure)
      return figure
    },
    log: (message) => process.stderr.write(`[${suite.name}] ${message}\n`),
  }
  ctx.log('running')
  try {
    await suite.run(ctx)
    ctx.log(`done in ${((nowMs() - started) / 1000).toFixed(1)} s`)
    return { figures, ms: nowMs() - started }
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
    process.stderr.write(`[${suite.name}] FAILED: ${message}\n`)
    return { figures, ms: nowMs() - started, error: message }
  }
}

async function main(): Promise<number> {
  let args
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'string', default: 'bench-results/latest.json' },
        only: { type: 'string' },
        compare: { type: 'boolean', default: false },
        confirm: { type: 'string', default: '1' },
        'update-baseline': { type: 'boolean', default: false },
        'baseline-dir': { type: 'string', default: BASELINE_DIR },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`)
    return EXIT.usage
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const only = args.only?.split(',').map((s) => s.trim()).filter(Boolean)
  const unknown = only?.filter((name) => !SUITES.some((s) => s.name === name)) ?? []
  if (unknown.length > 0) {
    process.stderr.write(`no suite named ${unknown.join(', ')}: there are ${SUITES.map((s) => s.name).join(', ')}\n`)
    return EXIT.usage
  }
  const confirm = Number(args.confirm)
  if (!Number.isInteger(confirm) || confirm < 0 || confirm > 5) {
    process.stderr.write(`--confirm takes a whole number from 0 to 5, not "${args.confirm}"\n`)
    return EXIT.usage
  }
  const suites = only ? SUITES.filter((s) => only.includes(s.name)) : SUITES
  const mode: Mode = args.quick ? 'quick' : 'full'
  const baselineDir = args['baseline-dir']

  const abort = new AbortController()
  const onSigint = (): void => abort.abort(new Error('interrupted'))
  process.once('SIGINT', onSigint)
  const temp = new TempDirs()
  const result: BenchResult = {
    date: new Date().toISOString(),
    quick: args.quick,
    machine: machine(),
    suites: [],
    figures: [],
  }
  const m = result.machine
  process.stderr.write(
    `tidemark bench${args.quick ? ' (quick)' : ''}: ${m.cpus} × ${m.cpuModel}, ${m.memoryMb} MB, node ${m.node}, ${m.platform}\n`,
  )
  let failed = false
  const comparisons: Comparison[] = []
  const notes: string[] = []
  try {
    for (const suite of suites) {
      if (abort.signal.aborted) break
      const first = await runSuite(suite, args.quick, abort.signal, temp)
      result.suites.push({ name: suite.name, ms: first.ms, ...(first.error ? { error: first.error } : {}) })
      result.figures.push(...first.figures)
      if (first.error) {
        failed = true
        continue
      }
      if (!args.compare) continue
      const committed = readBaseline(baselineDir, suite.name)?.[mode]
      if (!committed) {
        notes.push(`${suite.name}: no committed ${mode} baseline in ${baselineDir}: nothing to compare with (--update-baseline writes one)`)
        continue
      }
      const mismatch = machineMismatch(committed.machine, result.machine)
      if (mismatch) notes.push(`${suite.name}: committed on another machine (${mismatch}): compare with care`)
      const runs = [first.figures]
      let rows = compareRun(first.figures, committed)
      for (let i = 0; i < confirm && rows.some((r) => r.verdict === 'REGRESSION') && !abort.signal.aborted; i++) {
        process.stderr.write(`[${suite.name}] ${rows.filter((r) => r.verdict === 'REGRESSION').length} figure(s) look worse: running the suite again to confirm\n`)
        const again = await runSuite(suite, args.quick, abort.signal, temp)
        if (again.error) break
        runs.push(again.figures)
        rows = compareRun(bestOf(runs), committed)
      }
      if (runs.length > 1) notes.push(`${suite.name}: ran ${runs.length} times; each figure's best run is compared`)
      notes.push(`${suite.name}: committed baseline ${committed.commit} of ${committed.date.slice(0, 10)}`)
      comparisons.push(...rows)
    }
  } finally {
    temp.cleanup()
    process.off('SIGINT', onSigint)
  }
  process.stdout.write(`${formatTable(result.figures)}\n`)
  writeResult(args.json, result)
  process.stderr.write(`figures written to ${args.json}\n`)

  let regressed = false
  if (args.compare) {
    process.stdout.write(`\ncompared with the committed baselines (${mode}):\n${formatComparison(comparisons)}\n`)
    for (const note of notes) process.stdout.write(`- ${note}\n`)
    const bad = comparisons.filter((r) => r.verdict === 'REGRESSION')
    regressed = bad.length > 0
    process.stdout.write(
      regressed
        ? `REGRESSION: ${bad.length} figure(s) got ${REGRESSION_THRESHOLD * 100} % or more worse: ${bad.map((r) => `${r.suite}: ${r.figure}`).join('; ')}\n`
        : `no regression (${comparisons.filter((r) => r.verdict !== 'info' && r.verdict !== 'new' && r.verdict !== 'missing').length} figures judged)\n`,
    )
  }
  if (args['update-baseline'] && !abort.signal.aborted) {
    const commit = currentCommit()
    for (const s of result.suites) {
      if (s.error) {
        process.stderr.write(`baseline of ${s.name} not updated: the suite failed\n`)
        continue
      }
      const figures = result.figures.filter((f) => f.suite === s.name)
      const path = writeBaseline(baselineDir, s.name, mode, { commit, date: result.date, machine: result.machine, figures })
      process.stderr.write(`baseline written: ${path} (${mode}, ${commit})\n`)
    }
    if (baselineDir === BASELINE_DIR && updateReadmeFigures(README_PATH, baselineDir)) process.stderr.write(`${README_PATH}: figures table rewritten from the baselines\n`)
  }
  if (failed || abort.signal.aborted) return 1
  return regressed ? 3 : 0
}

process.exitCode = await main()
// A suite that leaves a handle open must not hang the run: exit soon after, whatever is left.
setTimeout(() => process.exit(), 2000).unref()
