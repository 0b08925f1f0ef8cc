/**
 * What every benchmark suite shares: timing (hrtime, medians, percentiles), the `Figure` record
 * with its baseline and target, the printed table and the JSON file, temporary folders, and peak
 * memory of child processes.
 *
 * The machine a benchmark runs on is shared and noisy, so no figure stands alone: each one is
 * printed next to a baseline measured in the same run, and targets are stated on the ratio.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'

// ---------------------------------------------------------------------------------------------
// Timing

/** Milliseconds on the monotonic clock (shared by every process of the machine on Linux). */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

/** How long `fn` takes, in ms. */
export async function timeMs(fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** Synchronous `timeMs`, for loops that must not yield to the event loop. */
export function timeSyncMs(fn: () => unknown): number {
  const start = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

export function median(values: readonly number[]): number {
  return percentile(values, 50)
}

/** The p-th percentile (0–100), interpolated between the two nearest ranks. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('percentile of no values')
  const sorted = [...values].sort((a, b) => a - b)
  const rank = (p / 100) * (sorted.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (rank - lo)
}

/** Runs `fn` `runs` times and returns each run's duration in ms. */
export async function repeatMs(runs: number, fn: (run: number) => unknown): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < runs; i++) {
    gc()
    out.push(await timeMs(() => fn(i)))
  }
  return out
}

/** Collects garbage when node runs with --expose-gc (npm run bench does), so that one measurement does not pay for another's garbage. */
export function gc(): void {
  ;(globalThis as { gc?: () => void }).gc?.()
}

export { prng } from '../src/util/prng.js'

/**
 * Runs `variants` once each per round, in an order that rotates from round to round, so that the
 * machine's noise spreads over all of them alike; `afterRound` reports the round.
 */
export async function rotateRounds(
  variants: ReadonlyArray<() => Promise<void>>,
  options: { rounds: number; signal: AbortSignal; collect?: boolean; afterRound?: (round: number) => void },
): Promise<void> {
  for (let round = 0; round < options.rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      options.signal.throwIfAborted()
      if (options.collect !== false) gc()
      await (variants[(i + round) % variants.length] as () => Promise<void>)()
    }
    options.afterRound?.(round)
  }
}

// ---------------------------------------------------------------------------------------------
// Figures

/** A target on a figure: the text printed, and the comparison a program can check. */
export interface Target {
  /** As printed, e.g. "≤ 1.5× cost". */
  text: string
  /** What is compared: the figure's ratio to its baseline, or its value. */
  on: 'ratio' | 'value'
  op: '<=' | '>='
  limit: number
}

export function atMost(limit: number, text: string, on: Target['on'] = 'ratio'): Target {
  return { text, on, op: '<=', limit }
}

export function atLeast(limit: number, text: string, on: Target['on'] = 'ratio'): Target {
  return { text, on, op: '>=', limit }
}

/**
 * How a figure's ratio is computed. `value/baseline` reads "this many times the baseline";
 * `baseline/value` turns two rates into a cost ("takes this many times the baseline's time").
 */
export type RatioKind = 'value/baseline' | 'baseline/value'

/**
 * Which way a figure improves: of its ratio to its same-run baseline when it has one, else of its
 * value. The regression gate (`--compare`) judges only figures that say.
 */
export type Better = 'higher' | 'lower'

/** One measured figure, as printed and as written to the JSON file. */
export interface Figure {
  suite: string
  figure: string
  value: number
  unit: string
  /** What the baseline is (measured in the same run), or null for a figure without one. */
  baseline: string | null
  baselineValue: number | null
  ratio: number | null
  ratioKind: RatioKind | null
  target: string | null
  check: Target | null
  /** Whether the target is met; null when the figure has no target. */
  pass: boolean | null
  /** Which way it improves (from its target unless given); null: informational, never a regression. */
  better: Better | null
  note?: string
}

export interface FigureInput {
  figure: string
  value: number
  unit: string
  baseline?: { name: string; value: number }
  /** Default `value/baseline`. */
  ratio?: RatioKind
  target?: Target
  /** Which way it improves; default: the target's direction (≥ higher, ≤ lower), else informational. */
  better?: Better
  note?: string
}

/** A target says which way a figure improves; on a value with a cost ratio (baseline/value), the ratio improves the other way. */
function betterFromTarget(target: Target | null, kind: RatioKind | null): Better | null {
  if (!target) return null
  const up = target.op === '>='
  const flip = target.on === 'value' && kind === 'baseline/value'
  return up !== flip ? 'higher' : 'lower'
}

export function makeFigure(suite: string, input: FigureInput): Figure {
  const { baseline } = input
  const kind = baseline ? (input.ratio ?? 'value/baseline') : null
  const ratio = !baseline ? null : kind === 'value/baseline' ? input.value / baseline.value : baseline.value / input.value
  const target = input.target ?? null
  let pass: boolean | null = null
  if (target) {
    const x = target.on === 'ratio' ? ratio : input.value
    pass = x !== null && Number.isFinite(x) && (target.op === '<=' ? x <= target.limit : x >= target.limit)
  }
  const figure: Figure = {
    suite,
    figure: input.figure,
    value: input.value,
    unit: input.unit,
    baseline: baseline?.name ?? null,
    baselineValue: baseline?.value ?? null,
    ratio,
    ratioKind: kind,
    target: target?.text ?? null,
    check: target,
    pass,
    better: input.better ?? betterFromTarget(target, kind),
  }
  if (input.note) figure.note = input.note
  return figure
}

/** A number the way a reader scans it: thousands separated, about three significant digits. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x)
  const abs = Math.abs(x)
  if (abs >= 1000) return Math.round(x).toLocaleString('en-US')
  if (abs >= 100) return x.toFixed(0)
  if (abs >= 10) return x.toFixed(1)
  if (abs >= 1) return x.toFixed(2)
  if (abs === 0) return '0'
  return x.toPrecision(2)
}

export function formatValue(x: number, unit: string): string {
  return unit ? `${formatNumber(x)} ${unit}` : formatNumber(x)
}

function formatRatio(f: Figure): string {
  if (f.ratio === null) return ''
  return `${f.ratio.toFixed(2)}×${f.ratioKind === 'baseline/value' ? ' cost' : ''}`
}

/** The figures as a plain aligned table: figure | value | baseline | ratio | target | ok. */
export function formatTable(figures: readonly Figure[]): string {
  const header = ['figure', 'value', 'baseline', 'ratio', 'target', 'ok']
  const rows: string[][] = []
  let suite: string | undefined
  const suiteRows = new Set<number>()
  for (const f of figures) {
    if (f.suite !== suite) {
      suite = f.suite
      suiteRows.add(rows.length)
      rows.push([`[${suite}]`, '', '', '', '', ''])
    }
    rows.push([
      f.figure,
      formatValue(f.value, f.unit),
      f.baseline === null ? '' : `${f.baseline}: ${formatValue(f.baselineValue as number, f.unit)}`,
      formatRatio(f),
      f.target ?? '',
      f.pass === null ? '' : f.pass ? 'yes' : 'NO',
    ])
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r, j) => (suiteRows.has(j) ? 0 : (r[i] as string).length))))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 1 || i === 3 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join(' | ')
      .trimEnd()
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('-|-')]
  rows.forEach((r, j) => out.push(suiteRows.has(j) ? (r[0] as string) : line(r)))
  return out.join('\n')
}

export interface Machine {
  node: string
  platform: string
  cpus: number
  cpuModel: string
  memoryMb: number
}

export function machine(): Machine {
  const list = cpus()
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryMb: Math.round(totalmem() / 2 ** 20),
  }
}

export interface BenchResult {
  date: string
  quick: boolean
  machine: Machine
  suites: Array<{ name: string; ms: number; error?: string }>
  figures: Figure[]
}

export function writeResult(path: string, result: BenchResult): void {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`)
}

// ---------------------------------------------------------------------------------------------
// Temporary folders

/** Temporary folders of one run, all removed by `cleanup()`. */
export class TempDirs {
  private readonly dirs: string[] = []

  make(prefix = 'tidemark-bench-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix))
    this.dirs.push(dir)
    return dir
  }

  cleanup(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// Peak memory

/** This process's peak resident set size so far, in bytes. */
export function selfPeakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024
}

/** A running process's peak resident set size (VmHWM) from /proc, in bytes; undefined where /proc is missing. */
export function procPeakRssBytes(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

// Loaded into a child with --import: on exit, it writes the child's peak RSS where it is told.
const RSS_REPORTER = `import { writeFileSync } from 'node:fs'
const out = process.env.TIDEMARK_BENCH_RSS_FILE
if (out) process.on('exit', () => writeFileSync(out, String(process.resourceUsage().maxRSS * 1024)))
`

export interface ChildRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
  /** The child's peak resident set size in bytes, as the child itself reported it on exit. */
  peakRssBytes: number
}

export interface ChildOptions {
  /** Arguments after `node` (a script and its arguments); the parent's --import hooks (tsx) come first. */
  args: string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
  timeoutMs?: number
  /** Called once the child is started, e.g. to talk to it over IPC. */
  onStart?: (child: ChildProcess) => void
  ipc?: boolean
}

/**
 * Runs a node child process to its end and returns its output, its wall time and its peak RSS
 * (read through `process.resourceUsage()` inside the child, reported on exit).
 */
export async function runNodeChild(temp: TempDirs, options: ChildOptions): Promise<ChildRun> {
  const dir = temp.make('tidemark-bench-child-')
  const reporter = join(dir, 'rss-reporter.mjs')
  const rssFile = join(dir, 'rss')
  writeFileSync(reporter, RSS_REPORTER)
  const started = nowMs()
  const child = spawn(process.execPath, [...process.execArgv, '--import', reporter, ...options.args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, TIDEMARK_BENCH_RSS_FILE: rssFile },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s))
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined
  options.onStart?.(child)
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  const ms = nowMs() - started
  let peakRssBytes = Number.NaN
  try {
    peakRssBytes = Number(readFileSync(rssFile, 'utf8'))
  } catch {
    // Killed before it could report: NaN says so.
  }
  return { code, signal, stdout, stderr, ms, peakRssBytes }
}
