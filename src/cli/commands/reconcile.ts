import type { Command } from 'commander'
import { BadRequestError, ConflictError, EXIT, TidemarkError } from '../../errors.js'
import type { ReconcileMode, ReconcileRun } from '../../reconcile/run.js'
import type { ReplicaState, ReplicaStore } from '../../store/replica-store.js'
import type { Cli, Registrar } from '../cli.js'
import { formatCount } from '../format.js'
import { durationOption, examples } from '../options.js'
import { CommandExit, reportError } from '../report-error.js'
import { CA_HELP, feedServerClient } from '../feed-server-client.js'

/**
 * Exit codes of `tidemark verify` and `tidemark repair`, for deploy gates and cron jobs (from the
 * CLI's one table, EXIT): intact or repaired; drift found (verify) or the source's history went back
 * (the replica must re-bootstrap); could not check (the source unreachable, a file that is not a
 * replica, an answer that does not add up, …). A usage error is a usage error here too.
 */
export const RECONCILE_EXIT = { intact: EXIT.ok, drift: EXIT.drift, unchecked: EXIT.unchecked } as const

interface ReconcileCommandOptions {
  name?: string
  source?: string
  token?: string
  ca?: string
  deep?: boolean
  json?: boolean
  wait: number
}

/** `tidemark verify <db>`: compare a replica with its source; report only. */
export const registerVerify: Registrar = (program, cli) => {
  define(program, cli, 'verify', "compare a replica with its source by digests and report drift (changes nothing)")
}

/** `tidemark repair <db>`: compare, then fetch and write exactly the drifted keys. */
export const registerRepair: Registrar = (program, cli) => {
  define(program, cli, 'repair', 'compare a replica with its source and repair the keys that drifted')
}

function define(program: Command, cli: Cli, mode: ReconcileMode, description: string): void {
  program
    .command(mode)
    .description(description)
    .argument('<db>', 'SQLite file of the replica (the --into of `tidemark replicate`)')
    .option('--name <name>', "the replica's name in the file (default: the only one)")
    .option('--source <url>', "the feed server's URL (default: the one the replica was made from)")
    .option('--token <token>', 'bearer token for the feed server (default: $TIDEMARK_TOKEN)')
    .option('--ca <file>', CA_HELP)
    .option('--deep', "first recompute the replica's digest from its rows: finds rows (or a digest) edited outside tidemark")
    .option('--json', 'print the run as JSON')
    .addOption(durationOption('--wait <duration>', 'how long to wait for a running replicator to do the run', 60_000))
    .addHelpText(
      'after',
      `
An intact replica is verified in one round trip of about 1 KB, whatever its size; drift is narrowed
down one level of the digest tree per round trip, and only the differing buckets' keys are listed.
A key is drifted when the source's version of it is at or below the replica's checkpoint and the
replica's copy differs, is missing or should not be there; a newer version on the source is lag,
which the log brings, and is never reported as drift.

When a replicator is running on the replica, the run is asked of it (it runs between two applied
transactions, with the service's projection hook); otherwise this command claims the replica and
runs it itself (a repair then writes the copy only: no projection hook runs).

Exit status: ${RECONCILE_EXIT.intact} intact (or repaired), ${RECONCILE_EXIT.drift} drift found (or the source's history went back:
the replica must re-bootstrap), ${RECONCILE_EXIT.unchecked} could not check. The run is recorded: \`tidemark status\` shows it.
${examples([`tidemark ${mode} orders.db`, `tidemark ${mode} orders.db --name customers --deep --json`])}`,
    )
    .action(async (db: string, options: ReconcileCommandOptions) => {
      let run: ReconcileRun
      try {
        run = await reconcileFile(cli, db, mode, options)
      } catch (error) {
        const code = reportError(error, { verbose: cli.verbose, write: (text) => process.stderr.write(text) })
        // The command line being wrong (--name missing, --source not honoured) is not "could not check".
        throw new CommandExit(code === EXIT.usage ? code : RECONCILE_EXIT.unchecked)
      }
      if (options.json) await cli.print(JSON.stringify(run, null, 2))
      else await cli.print(...describeRun(run))
      const code = exitCodeOf(run)
      if (code !== 0) throw new CommandExit(code)
    })
}

export function exitCodeOf(run: ReconcileRun): number {
  switch (run.outcome) {
    case 'intact':
    case 'repaired':
      return RECONCILE_EXIT.intact
    case 'drift':
    case 'rebootstrap':
      return RECONCILE_EXIT.drift
    case 'failed':
      return RECONCILE_EXIT.unchecked
  }
}

async function reconcileFile(cli: Cli, db: string, mode: ReconcileMode, options: ReconcileCommandOptions): Promise<ReconcileRun> {
  const [{ HttpFeedSource }, { openReplicaStore, readReplicaReports }, { reconcile }] = await Promise.all([
    import('../../transport/http/http-feed-source.js'),
    import('../../store/open.js'),
    import('../../reconcile/reconcile.js'),
  ])
  // A read-only look first: a file that is not a replica must not get replica tables by being verified.
  await readReplicaReports(db)
  const store = await openReplicaStore(db, { create: false, logger: cli.logger('store') })
  try {
    const state = await pickReplica(store, db, options.name)
    const deep = options.deep === true
    const source = new HttpFeedSource(options.source ?? state.source, feedServerClient(options))
    try {
      await store.claim(state.name, state.feed, state.source)
    } catch (error) {
      await source.close()
      if (!(error instanceof ConflictError)) throw error
      // A replicator holds it: ask it, so the run happens between its transactions, with its hook —
      // against its own source. A --source naming another one cannot be honoured then: checking the
      // replicator's source instead would answer a question the operator did not ask (a server that
      // is down reported "intact").
      if (source.description !== state.source) {
        throw new BadRequestError(
          `--source ${source.description} cannot be honoured: replica "${state.name}" is held by a running replicator, which ${mode}s against its own source ${state.source}; ` +
            'stop the replicator to check against another source, or leave --source out',
        )
      }
      cli.note(`replica "${state.name}" is held by a running replicator: asking it to ${mode}`)
      return await askReplicator(store, state.name, mode, deep, options.wait)
    }
    try {
      const run = await reconcile({ source, feed: state.feed, store, name: state.name, mode, deep, trigger: 'demand' })
      if (mode === 'repair' && run.repaired > 0) {
        cli.note(`repaired the copy in ${db}; no projection hook ran (no replicator was running): a service that projects this replica should repair through its own process`)
      }
      return run
    } finally {
      await source.close()
      await store.release(state.name)
    }
  } finally {
    await store.close()
  }
}

async function pickReplica<Tx>(store: ReplicaStore<Tx>, db: string, name: string | undefined): Promise<ReplicaState> {
  const all = await store.list()
  if (all.length === 0) throw new TidemarkError('bad-request', `${db} holds no replica: start one with \`tidemark replicate <url> <feed> --into ${db}\``)
  const names = all.map((s) => `"${s.name}"`).join(', ')
  if (name === undefined) {
    if (all.length > 1) throw new TidemarkError('bad-request', `${db} holds several replicas (${names}): say which with --name`)
    return all[0] as ReplicaState
  }
  const state = all.find((s) => s.name === name)
  if (state === undefined) throw new TidemarkError('bad-request', `no replica "${name}" in ${db}: it holds ${names}`)
  return state
}

async function askReplicator<Tx>(store: ReplicaStore<Tx>, name: string, mode: ReconcileMode, deep: boolean, waitMs: number): Promise<ReconcileRun> {
  const id = await store.requestRun(name, { mode, deep })
  const deadline = Date.now() + waitMs
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200))
    const run = (await store.runs(name, 20)).find((r) => r.requestId === id)
    if (run !== undefined) return run
  }
  throw new TidemarkError(
    'store-unavailable',
    `the replicator holding replica "${name}" did not answer within ${Math.round(waitMs / 1000)} s (it may be bootstrapping, or an older tidemark): try again later or with a longer --wait`,
  )
}

/** A run for people: the outcome first, then what it cost and what drifted. */
export function describeRun(run: ReconcileRun): string[] {
  const c = run.cost
  const head =
    run.outcome === 'intact'
      ? `intact: the replica equals the source at checkpoint ${run.checkpoint}`
      : run.outcome === 'repaired'
        ? `repaired ${formatCount(run.repaired)} of ${formatCount(run.drifted)} drifted key(s) at checkpoint ${run.checkpoint}`
        : run.outcome === 'drift'
          ? `drift: ${formatCount(run.drifted)} key(s) differ from the source at checkpoint ${run.checkpoint}`
          : run.outcome === 'rebootstrap'
            ? `the replica must re-bootstrap: ${run.error ?? ''}`
            : `could not check: ${run.error ?? ''}`
  const lines = [head]
  lines.push(
    `  compared ${formatCount(c.nodes)} digest nodes, ${formatCount(c.buckets)} buckets, ${formatCount(c.keys)} keys in ${c.roundTrips} round trip(s), ` +
      `${formatCount(c.bytesSent)} B sent, ${formatCount(c.bytesReceived)} B received, ${run.finishedAt - run.startedAt} ms`,
  )
  if (run.lagging > 0) lines.push(`  ${formatCount(run.lagging)} key(s) newer on the source: lag, the log brings them`)
  if (run.digestRepair) lines.push(`  deep: the stored digest was wrong in ${run.digestRepair.buckets} bucket(s), ${run.digestRepair.rows} row hash(es) stale: recomputed`)
  if (run.error && run.outcome !== 'failed' && run.outcome !== 'rebootstrap') lines.push(`  note: ${run.error}`)
  for (const d of run.drift) {
    const src = d.source === null ? 'absent' : d.source.hash === null ? `deleted at ${d.source.seq}` : `seq ${d.source.seq}`
    const rep = d.replica === null ? 'absent' : `seq ${d.replica.seq}`
    lines.push(`  ${d.kind.padEnd(7)} ${JSON.stringify(d.key)}  source: ${src}, replica: ${rep}`)
  }
  if (run.drifted > run.drift.length) lines.push(`  … and ${formatCount(run.drifted - run.drift.length)} more`)
  return lines
}
