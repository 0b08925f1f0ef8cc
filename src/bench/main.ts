/**
 * `npm run bench` — tidemark's benchmarks (docs/bench.md says what each figure means).
 *
 *   node --expose-gc dist/bench/main.js [--quick] [--json <path>] [--only <suite,…>]
 *
 * Prints one table (figure | value | baseline | ratio | target | ok) on stdout, progress on
 * stderr, and writes every figure to a JSON file. Exits 1 when a suite fails to run, 2 on bad
 * usage; a missed target is reported in the table ("NO"), not through the exit code.
 */
import { parseArgs } from 'node:util'
import { formatTable, machine, makeFigure, nowMs, TempDirs, writeResult, type BenchResult, type Figure } from './harness.js'
import type { BenchContext } from './suite.js'
import { SUITES } from './suites/index.js'

const USAGE = `usage: bench [--quick] [--json <path>] [--only <suite,…>]

  --quick         small sizes: the whole run in well under a minute
  --json <path>   where to write the figures (default bench-results/latest.json)
  --only <names>  run only these suites (comma-separated)

suites:
${SUITES.map((s) => `  ${s.name.padEnd(14)}${s.description}`).join('\n')}`

async function main(): Promise<number> {
  let args
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'string', default: 'bench-results/latest.json' },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`)
    return 2
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const only = args.only?.split(',').map((s) => s.trim()).filter(Boolean)
  const unknown = only?.filter((name) => !SUITES.some((s) => s.name === name)) ?? []
  if (unknown.length > 0) {
    process.stderr.write(`no suite named ${unknown.join(', ')}: there are ${SUITES.map((s) => s.name).join(', ')}\n`)
    return 2
  }
  const suites = only ? SUITES.filter((s) => only.includes(s.name)) : SUITES

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
  try {
    for (const suite of suites) {
      if (abort.signal.aborted) break
      const started = nowMs()
      const figures: Figure[] = []
      const ctx: BenchContext = {
        quick: args.quick,
        signal: abort.signal,
        tmpDir: (prefix) => temp.make(prefix),
        report: (input) => {
          const figure = makeFigure(suite.name, input)
          figures.push(figure)
          result.figures.push(figure)
          return figure
        },
        log: (message) => process.stderr.write(`[${suite.name}] ${message}\n`),
      }
      ctx.log('running')
      try {
        await suite.run(ctx)
        result.suites.push({ name: suite.name, ms: nowMs() - started })
        ctx.log(`done in ${((nowMs() - started) / 1000).toFixed(1)} s`)
      } catch (error) {
        failed = true
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
        result.suites.push({ name: suite.name, ms: nowMs() - started, error: message })
        process.stderr.write(`[${suite.name}] FAILED: ${message}\n`)
      }
    }
  } finally {
    temp.cleanup()
    process.off('SIGINT', onSigint)
  }
  process.stdout.write(`${formatTable(result.figures)}\n`)
  writeResult(args.json, result)
  process.stderr.write(`figures written to ${args.json}\n`)
  return failed || abort.signal.aborted ? 1 : 0
}

process.exitCode = await main()
// A suite that leaves a handle open must not hang the run: exit soon after, whatever is left.
setTimeout(() => process.exit(), 2000).unref()
