/**
 * The README's figures table, produced from the committed baselines (bench/baselines/, full runs)
 * so that it can never say what main does not do: `--update-baseline` rewrites it, and
 * test/bench/readme-figures.test.ts fails when the README and the baselines disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { readBaseline, type BaselineRun } from './baselines.js'
import { formatNumber, type Figure } from './harness.js'

export const README_PATH = 'README.md'
export const BEGIN = '<!-- figures:begin — generated from bench/baselines by `npm run bench -- --update-baseline`; edit bench/readme-figures.ts, not this table -->'
export const END = '<!-- figures:end -->'

/** One suite's committed full run, by figure name. */
class Figures {
  constructor(
    readonly suite: string,
    private readonly run: BaselineRun,
  ) {}

  get(name: string): Figure {
    const f = this.run.figures.find((x) => x.figure === name)
    if (!f) throw new Error(`bench/baselines/${this.suite}.json (full) has no figure "${name}": re-run the suite with --update-baseline, or fix the README row`)
    return f
  }

  ratio(name: string): string {
    const r = this.get(name).ratio
    if (r === null) throw new Error(`figure "${name}" of suite ${this.suite} has no ratio`)
    return `${r.toFixed(2)}×`
  }

  value(name: string, digits?: number): string {
    const f = this.get(name)
    return digits === undefined ? formatNumber(f.value) : f.value.toFixed(digits)
  }

  baseline(name: string, digits?: number): string {
    const v = this.get(name).baselineValue
    if (v === null) throw new Error(`figure "${name}" of suite ${this.suite} has no baseline`)
    return digits === undefined ? formatNumber(v) : v.toFixed(digits)
  }

  get commit(): string {
    return this.run.commit
  }
}

const kb = (bytes: number): string => (bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : bytes >= 1e4 ? `${(bytes / 1e3).toFixed(0)} KB` : bytes >= 1e3 ? `${(bytes / 1e3).toFixed(1)} KB` : `${Math.round(bytes)} B`)

interface Row {
  suite: string
  label: string
  cell: (f: Figures) => string
}

/** The rows, in the README's order. A row names its figures exactly as the suite reports them. */
const ROWS: readonly Row[] = [
  {
    suite: 'source',
    label: "owner's writes with table capture, durable commits (synchronous=FULL), 1 / 10 rows per tx",
    cell: (f) => `${f.ratio('owner writes (sync=FULL), 1-row tx: table capture')} / ${f.ratio('owner writes (sync=FULL), 10-row tx: table capture')} the time without tidemark`,
  },
  {
    suite: 'source',
    label: "the same with WAL's synchronous=NORMAL, 1 / 10 / 100 rows per tx",
    cell: (f) => [1, 10, 100].map((t) => f.ratio(`owner writes, ${t}-row tx: table capture`)).join(' / '),
  },
  {
    suite: 'source',
    label: 'the source\'s indexer (state and digest kept up to date) vs API writes in 100-row tx',
    cell: (f) => `${f.ratio('indexer: changes digested by maintain()')} (${f.value('indexer: changes digested by maintain()')} changes/s)`,
  },
  {
    suite: 'source',
    label: 'reading 1,000,000 changes over HTTP vs straight from SQLite in-process',
    cell: (f) => `${f.ratio('changes read over HTTP (1,000,000 changes)')} (${f.ratio('changes read over HTTP, client in another process')} from another process)`,
  },
  {
    suite: 'source',
    label: 'long-poll wake-up, commit → response, p50',
    cell: (f) => `${f.value('long-poll wake-up p50, commit in-process', 2)} ms (a plain request: ${f.baseline('long-poll wake-up p50, commit in-process', 2)} ms)`,
  },
  {
    suite: 'replica',
    label: 'bootstrap of 1,000,000 rows over HTTP vs a raw in-process copy',
    cell: (f) => {
      const rss = 'replicator peak RSS, bootstrap of 1,000,000 rows'
      return `${f.ratio('bootstrap over HTTP (1,000,000 rows)')}, replicator peak RSS flat (${f.value(rss, 0)} MB vs ${f.baseline(rss, 0)} MB for 100,000 rows)`
    },
  },
  {
    suite: 'replica',
    label: 'live apply of 200,000 changes in 100-change transactions vs raw upserts',
    cell: (f) => f.ratio('live apply (200,000 changes in 100-change tx)'),
  },
  {
    suite: 'replica',
    label: 'commit → applied at the replica, owner at 1,000 tx/s, p50 / p99',
    cell: (f) => `${f.value('commit → applied p50, 1,000 tx/s', 2)} ms / ${f.value('commit → applied p99, 1,000 tx/s', 2)} ms`,
  },
  {
    suite: 'reconcile',
    label: 'verify of an intact replica of 1,000,000 keys over HTTP',
    cell: (f) => {
      const bytes = f.get('verify, intact replica of 1,000,000 keys: bytes')
      const time = f.get('verify, intact replica of 1,000,000 keys: time')
      return `${kb(bytes.value)}, ${time.value.toFixed(1)} ms (naive: every key's hash, ${kb(bytes.baselineValue as number)}, ${((time.baselineValue as number) / 1000).toFixed(0)} s)`
    },
  },
  {
    suite: 'reconcile',
    label: 'find and repair 1 / 100 / 10,000 drifted keys of 1,000,000',
    cell: (f) => {
      const ds = ['1', '100', '10,000']
      const trips = ds.map((d) => f.value(`find and repair ${d} drifted key(s): round trips`, 0)).join(' / ')
      const bytes = ds.map((d) => kb(f.get(`find and repair ${d} drifted key(s): bytes`).value)).join(' / ')
      const ratios = ds.map((d) => f.ratio(`find and repair ${d} drifted key(s): bytes`)).join(' / ')
      return `${trips} round trips; ${bytes} (${ratios} of naive)`
    },
  },
  {
    suite: 'export',
    label: 'export / import of 1,000,000 rows vs `sqlite3 .dump \\| gzip` / loading that dump',
    cell: (f) =>
      `file ${f.ratio('export file size (1,000,000 rows)')} the size; ${f.ratio('export (1,000,000 rows)')} / ${f.ratio('import (1,000,000 rows)')} the time; ` +
      `peak RSS flat (${f.ratio('export peak RSS, 1,000,000 rows')} / ${f.ratio('import peak RSS, 1,000,000 rows')} of 100,000 rows)`,
  },
  {
    suite: 'postgres',
    label: 'PostgreSQL owner writes with capture, 8 connections, 1 / 10-row tx, vs no capture',
    cell: (f) => `${f.ratio('owner writes, 8 connections, 1-row tx: capture on')} / ${f.ratio('owner writes, 8 connections, 10-row tx: capture on')} the throughput (target ≥ 0.6×)`,
  },
  {
    suite: 'postgres',
    label: 'PostgreSQL → PostgreSQL: bootstrap of 1,000,000 rows / streaming 200,000 changes vs native logical replication',
    cell: (f) => `${f.ratio('bootstrap 1,000,000 rows PG → PG: tidemark replica')} / ${f.ratio('streaming 200,000 changes PG → PG: tidemark replica')} the time (target ≤ 2×; docs/bench.md says why the bootstrap's is out of reach on two cores)`,
  },
  {
    suite: 'brokers',
    label: 'fan-out of 200,000 changes to 50 replicas (a process each), NATS / RabbitMQ vs HTTP long-poll',
    cell: (f) => `${f.ratio('fan-out via NATS JetStream, 200,000 changes to 50 replicas')} / ${f.ratio('fan-out via RabbitMQ, 200,000 changes to 50 replicas')} the rate (target ≥ 3×: out of reach on two cores, docs/bench.md)`,
  },
]

/** The table for the README, from the baselines in `dir`; suites without a full baseline say so. */
export function renderFigures(dir: string): string {
  const runs = new Map<string, Figures | undefined>()
  const figuresOf = (suite: string): Figures | undefined => {
    if (!runs.has(suite)) {
      const run = readBaseline(dir, suite)?.full
      runs.set(suite, run ? new Figures(suite, run) : undefined)
    }
    return runs.get(suite)
  }
  const lines = ['| figure | ratio to its baseline |', '| --- | --- |']
  for (const row of ROWS) {
    const f = figuresOf(row.suite)
    lines.push(`| ${row.label} | ${f ? row.cell(f) : `not measured: no committed baseline of suite ${row.suite}`} |`)
  }
  const commits = [...runs].filter(([, f]) => f).map(([suite, f]) => `${suite} ${(f as Figures).commit}`)
  lines.push('', `Committed full runs (\`bench/baselines/\`): ${commits.join(', ')}.`)
  return lines.join('\n')
}

/** The README with its figures block replaced; throws when the markers are missing. */
export function withFigures(readme: string, table: string): string {
  const begin = readme.indexOf(BEGIN)
  const end = readme.indexOf(END)
  if (begin < 0 || end < begin) throw new Error(`README.md has no figures block (${BEGIN} … ${END})`)
  return `${readme.slice(0, begin + BEGIN.length)}\n${table}\n${readme.slice(end)}`
}

/** Rewrites the README's figures block from the baselines; true when it changed (false when the README has no block yet). */
export function updateReadmeFigures(readmePath: string, dir: string): boolean {
  const before = readFileSync(readmePath, 'utf8')
  if (!before.includes(BEGIN)) return false
  const after = withFigures(before, renderFigures(dir))
  if (after === before) return false
  writeFileSync(readmePath, after)
  return true
}
