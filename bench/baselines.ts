/**
 * Committed baselines and the regression gate (`npm run bench -- --compare`).
 *
 * Each suite's figures from a deliberate run are committed in `bench/baselines/<suite>.json`, one
 * section per mode (full, quick: the sizes differ, so the figures do too), with the commit, date
 * and machine they were measured on. `--compare` runs the suites asked for and sets each figure's
 * ratio to its same-run baseline (its value, for a figure without one) beside the committed one; a
 * figure that got 15 % or more worse is a REGRESSION. Ratios, not values, are compared wherever a
 * figure has a same-run baseline: the machine's noise moves both sides of a ratio alike.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Better, Figure, Machine } from './harness.js'

/** Where the baselines live, relative to the repository's root. */
export const BASELINE_DIR = 'bench/baselines'

/** How much worse a compared quantity may get before it is a regression. */
export const REGRESSION_THRESHOLD = 0.15

export type Mode = 'full' | 'quick'

/** One suite's figures from one run, as committed. */
export interface BaselineRun {
  commit: string
  date: string
  machine: Machine
  figures: Figure[]
}

export interface BaselineFile {
  suite: string
  full?: BaselineRun
  quick?: BaselineRun
}

export function baselinePath(dir: string, suite: string): string {
  return join(dir, `${suite}.json`)
}

export function readBaseline(dir: string, suite: string): BaselineFile | undefined {
  const path = baselinePath(dir, suite)
  if (!existsSync(path)) return undefined
  const file = JSON.parse(readFileSync(path, 'utf8')) as BaselineFile
  if (file.suite !== suite) throw new Error(`${path} holds suite "${file.suite}", not "${suite}"`)
  return file
}

/** Replaces one mode's run of a suite in its baseline file, keeping the other mode's. */
export function writeBaseline(dir: string, suite: string, mode: Mode, run: BaselineRun): string {
  const file: BaselineFile = readBaseline(dir, suite) ?? { suite }
  file[mode] = run
  mkdirSync(dir, { recursive: true })
  const path = baselinePath(dir, suite)
  // Keys in a fixed order (suite, full, quick) so that a rewrite diffs only what changed.
  const ordered: BaselineFile = { suite, ...(file.full ? { full: file.full } : {}), ...(file.quick ? { quick: file.quick } : {}) }
  writeFileSync(path, `${JSON.stringify(ordered, null, 2)}\n`)
  return path
}

/** The checkout's commit, marked `-dirty` when the tracked sources differ from it; `unknown` outside git. */
export function currentCommit(cwd = process.cwd()): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty ? `${head}-dirty` : head
  } catch {
    return 'unknown'
  }
}

export type Verdict = 'ok' | 'better' | 'REGRESSION' | 'info' | 'new' | 'missing'

/** One figure of today's run beside the committed one. */
export interface Comparison {
  suite: string
  figure: string
  /** What is compared: the figure's ratio to its same-run baseline, or its value when it has none. */
  on: 'ratio' | 'value'
  today: number | null
  committed: number | null
  /** today / committed, oriented so that above 1 is better (null when either side is missing). */
  score: number | null
  better: Better | null
  verdict: Verdict
}

function compared(f: Figure): { on: 'ratio' | 'value'; x: number } {
  return f.ratio !== null ? { on: 'ratio', x: f.ratio } : { on: 'value', x: f.value }
}

/**
 * Today's figures of one suite against its committed run. A figure is a REGRESSION when its
 * compared quantity moved the wrong way by `threshold` or more: a higher-is-better one fell to
 * `1 - threshold` of the committed, a lower-is-better one rose to `1 + threshold` of it.
 */
export function compareRun(today: readonly Figure[], committed: BaselineRun | undefined, threshold = REGRESSION_THRESHOLD): Comparison[] {
  const before = new Map((committed?.figures ?? []).map((f) => [f.figure, f]))
  const out: Comparison[] = []
  for (const f of today) {
    const now = compared(f)
    const old = before.get(f.figure)
    before.delete(f.figure)
    const better = f.better ?? null
    if (!old) {
      out.push({ suite: f.suite, figure: f.figure, on: now.on, today: now.x, committed: null, score: null, better, verdict: 'new' })
      continue
    }
    const then = compared(old)
    let score: number | null = null
    let verdict: Verdict = 'info'
    if (better && then.on === now.on && then.x > 0 && now.x > 0) {
      score = better === 'higher' ? now.x / then.x : then.x / now.x
      const worse = better === 'higher' ? now.x <= then.x * (1 - threshold) : now.x >= then.x * (1 + threshold)
      const improved = better === 'higher' ? now.x >= then.x * (1 + threshold) : now.x <= then.x * (1 - threshold)
      verdict = worse ? 'REGRESSION' : improved ? 'better' : 'ok'
    }
    out.push({ suite: f.suite, figure: f.figure, on: now.on, today: now.x, committed: then.x, score, better, verdict })
  }
  for (const old of before.values()) {
    const then = compared(old)
    out.push({ suite: old.suite, figure: old.figure, on: then.on, today: null, committed: then.x, score: null, better: old.better ?? null, verdict: 'missing' })
  }
  return out
}

/**
 * Of several runs of the same figures (a suite re-run to confirm a regression), the best
 * measurement of each: a regression stands only when every run shows it.
 */
export function bestOf(runs: ReadonlyArray<readonly Figure[]>): Figure[] {
  const best = new Map<string, Figure>()
  for (const run of runs) {
    for (const f of run) {
      const seen = best.get(f.figure)
      // An informational figure keeps its first run; a judged one its best.
      if (!seen) best.set(f.figure, f)
      else if (f.better && (f.better === 'higher' ? compared(f).x > compared(seen).x : compared(f).x < compared(seen).x)) best.set(f.figure, f)
    }
  }
  return [...best.values()]
}

function fmt(x: number | null, on: 'ratio' | 'value'): string {
  if (x === null) return '–'
  if (on === 'ratio') return `${x.toFixed(2)}×`
  return Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toPrecision(3)
}

/** The comparison as an aligned table: figure | compared | committed | today | change | verdict. */
export function formatComparison(rows: readonly Comparison[]): string {
  const header = ['figure', 'compared', 'committed', 'today', 'change', 'verdict']
  const cells = rows.map((r) => [
    `${r.suite}: ${r.figure}`,
    `${r.on}${r.better ? (r.better === 'higher' ? ' ↑' : ' ↓') : ''}`,
    fmt(r.committed, r.on),
    fmt(r.today, r.on),
    r.score === null ? '' : `${r.score >= 1 ? '+' : '−'}${Math.abs((r.score - 1) * 100).toFixed(0)} %`,
    r.verdict,
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)))
  const line = (c: string[]): string =>
    c
      .map((s, i) => (i >= 2 && i <= 4 ? s.padStart(widths[i] as number) : s.padEnd(widths[i] as number)))
      .join(' | ')
      .trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...cells.map(line)].join('\n')
}

/** Why a comparison across machines is weak, or undefined when the machines match. */
export function machineMismatch(committed: Machine, today: Machine): string | undefined {
  const diffs: string[] = []
  if (committed.cpus !== today.cpus) diffs.push(`${committed.cpus} → ${today.cpus} cores`)
  if (committed.cpuModel !== today.cpuModel) diffs.push(`CPU ${committed.cpuModel} → ${today.cpuModel}`)
  if (committed.node.split('.')[0] !== today.node.split('.')[0]) diffs.push(`node ${committed.node} → ${today.node}`)
  return diffs.length ? diffs.join(', ') : undefined
}
