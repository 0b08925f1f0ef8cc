import type { Registrar } from '../cli.js'
import { formatAgo, formatCount, formatSpan } from '../format.js'
import { examples } from '../options.js'
import type { ReconcileRun } from '../../reconcile/run.js'
import { readReplicaReports } from '../../store/open.js'
import type { ReplicaReport } from '../../store/sqlite/replica-report.js'

/** `tidemark status <replica.db>`: what the replica file says about each replica in it, no network. */
export const registerStatus: Registrar = (program, cli) => {
  program
    .command('status')
    .description("show each replica in a replica file: phase, checkpoint, keys, lag behind the source's last head seen")
    .argument('<db>', 'SQLite file or postgres:// URL of the replica (the --into of `tidemark replicate`)')
    .option('--name <name>', 'only this replica (default: every replica in the file)')
    .option('--json', 'print a JSON array instead of text')
    .addHelpText(
      'after',
      `
Reads the file only (read-only, no network): the source head and lag are as the replicator last
heard them; times are ISO 8601, in UTC (in --json too). The phase is "bootstrapping", "catching-up" or "live" while a replicator holds the
replica ("live": at the last head it heard of), and "stopped" otherwise; a stopped bootstrap
resumes from its last chunk when \`tidemark replicate\` runs again.
${examples(['tidemark status orders.db', 'tidemark status orders.db --name customers --json | jq .[0].lag'])}`,
    )
    .action(async (db: string, options: { name?: string; json?: boolean }) => {
      const now = Date.now()
      const only = { ...(options.name === undefined ? {} : { name: options.name }), now }
      const reports = await readReplicaReports(db, only)
      if (options.json) await cli.print(JSON.stringify(reports, isoTimes, 2))
      else await cli.print(...reports.flatMap((r, i) => [...(i > 0 ? [''] : []), ...describe(r, now)]))
    })
}

/** One replica as a few aligned lines. */
export function describe(r: ReplicaReport, now: number): string[] {
  const rows: Array<[string, string]> = [['phase', phaseText(r)]]
  if (r.bootstrap) rows.push(['bootstrap', bootstrapText(r.bootstrap, now)])
  rows.push(['epoch', r.epoch ?? '- (no copy yet)'])
  rows.push(['checkpoint', r.appliedAt === null ? String(r.checkpoint) : `${r.checkpoint} (moved ${when(r.appliedAt, now)})`])
  rows.push(['keys', formatCount(r.keys)])
  rows.push(['source head', r.sourceHeadAt === null ? (r.sourceHead > 0 ? String(r.sourceHead) : '- (not heard yet)') : `${r.sourceHead} (heard ${when(r.sourceHeadAt, now)})`])
  rows.push(['lag', lagText(r)])
  const last = r.runs[0]
  if (last !== undefined) rows.push(['reconciled', runText(last, now)])
  const width = Math.max(...rows.map(([k]) => k.length))
  return [`${r.name}: feed "${r.feed}" from ${r.source}`, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)]
}

function runText(run: ReconcileRun, now: number): string {
  const what =
    run.outcome === 'intact'
      ? 'intact'
      : run.outcome === 'repaired'
        ? `${run.repaired} of ${run.drifted} drifted key(s) repaired`
        : run.outcome === 'drift'
          ? `${run.drifted} drifted key(s) found, not repaired`
          : run.outcome === 'rebootstrap'
            ? 're-bootstrap needed (source history went back)'
            : `could not check (${run.error ?? 'unknown'})`
  return `${what} — ${run.mode}${run.deep ? ' --deep' : ''} (${run.trigger}) ${when(run.finishedAt, now)}, ${run.cost.roundTrips} round trip(s), ${run.cost.bytesSent + run.cost.bytesReceived} B`
}

function phaseText(r: ReplicaReport): string {
  if (r.replicator) return `${r.phase} (replicator pid ${r.replicator.pid} on ${r.replicator.host})`
  if (r.bootstrap) return 'stopped mid-bootstrap (resumes from its last chunk when `tidemark replicate` runs again)'
  return r.epoch === null ? 'stopped (never bootstrapped)' : 'stopped (no replicator running)'
}

function bootstrapText(b: NonNullable<ReplicaReport['bootstrap']>, now: number): string {
  const copy = b.snapshotDone
    ? `snapshot copied (${formatCount(b.copied)} keys)`
    : `${formatCount(b.copied)} keys copied${b.afterKey === null ? '' : `, up to key ${JSON.stringify(b.afterKey)}`}`
  const elapsedMs = now - b.startedAt
  // The rate so far, across stops and resumes: what the file can tell without asking the source
  // (which alone knows how many keys there are in all).
  const rate = !b.snapshotDone && b.copied > 0 && elapsedMs >= 1000 ? `, ${formatCount(Math.round((b.copied / elapsedMs) * 1000))} keys/s so far` : ''
  return `${copy}; began at head ${b.s0} ${when(b.startedAt, now)}${rate}, snapshot read up to ${b.readHead}, log applied to ${b.seq}`
}

/** A moment for people and for logs alike: `4.2 s ago, at 2026-05-01T12:00:00.000Z`. */
function when(at: number, now: number): string {
  return `${formatAgo(at, now)}, at ${new Date(at).toISOString()}`
}

/** --json: the report's moments (epoch ms in the store) as ISO 8601 strings. */
function isoTimes(key: string, value: unknown): unknown {
  return typeof value === 'number' && /(At|Until|Since)$/.test(key) ? new Date(value).toISOString() : value
}

function lagText(r: ReplicaReport): string {
  if (r.lag.changes === 0) return r.sourceHeadAt === null && r.sourceHead === 0 ? '-' : 'none (at the last head heard)'
  const changes = `${formatCount(r.lag.changes)} change${r.lag.changes === 1 ? '' : 's'} behind`
  return r.lag.seconds === null ? changes : `${changes}, for ${formatSpan(r.lag.seconds * 1000)}`
}
