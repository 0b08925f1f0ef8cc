import { BadRequestError } from '../../errors.js'
import { encodeChange, encodeRow } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import type { SourceStore } from '../../store/store.js'
import type { Cli, Registrar } from '../cli.js'
import { examples, parsePositive } from '../options.js'

interface DumpOptions {
  after?: string
  limit?: number
  state?: boolean
}

/** `tidemark dump <db> <feed>`: a feed's log, or its state, as NDJSON on stdout. */
export const registerDump: Registrar = (program, cli) => {
  program
    .command('dump')
    .description("print a feed's changes (default) or its current state rows as NDJSON")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<feed>', 'feed name')
    .option('--after <position>', 'changes: start after this seq (default 0); --state: start after this key')
    .option('--limit <n>', 'changes: stop at the end of the transaction that reaches n changes; --state: at most n rows', parsePositive)
    .option('--state', "print the feed's state rows {key, seq, data} in key order instead of its changes")
    .addHelpText(
      'after',
      `
Changes print as {"seq":…,"key":…,"op":"upsert"|"delete","data":…,"tx":…,"ts":…}, whole source
transactions at a time (tx is the seq of the transaction's last change). State rows print as
{"key":…,"seq":…,"data":…}, read in short chunks while the owner keeps writing. Reads only (a
file that is not a source is named as such and left unchanged); for --state, when no feed server
has brought the feed's digest up to its head yet, dump folds the log into it first, as a server would.
${examples([
  'tidemark dump shop.db customers',
  'tidemark dump shop.db customers --after 1200 --limit 100',
  'tidemark dump shop.db customers --state | jq -c .data',
  'tidemark dump shop.db customers --state --after 42 | head -5',
])}`,
    )
    .action(async (db: string, feed: string, options: DumpOptions) => {
      if (options.state) await cli.readSource(db, [feed], (store) => dumpState(cli, store, feed, options))
      else await cli.withStore(db, { readonly: true }, (store) => dumpChanges(cli, store, feed, options))
    })
}

async function dumpChanges(cli: Cli, store: SourceStore, feed: string, options: DumpOptions): Promise<void> {
  const after = options.after === undefined ? 0 : parseSeq(options.after)
  const controller = new AbortController()
  const changes = store.changes(feed, after, {
    ...(options.limit === undefined ? {} : { limit: options.limit }),
    signal: controller.signal,
  })
  try {
    for await (const batch of changes) {
      for (const change of batch) await cli.out.line(encodeChange(change))
    }
    await cli.out.flush()
  } finally {
    controller.abort()
  }
}

async function dumpState(cli: Cli, store: SourceStore, feed: string, options: DumpOptions): Promise<void> {
  let after: string | null = options.after ?? null
  let left = options.limit ?? Number.POSITIVE_INFINITY
  while (left > 0) {
    const chunk = await store.snapshot(feed, after, Math.min(left, LIMITS.snapshotDefault))
    for (const row of chunk.rows) await cli.out.line(encodeRow(row))
    left -= chunk.rows.length
    if (chunk.done || chunk.last === null) break
    after = chunk.last
  }
  await cli.out.flush()
}

function parseSeq(text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new BadRequestError(`--after must be a seq (a whole number ≥ 0) when dumping changes, got ${JSON.stringify(text)}`)
  }
  return Number(text)
}
