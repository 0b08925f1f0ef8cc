import { UnknownFeedError } from '../../errors.js'
import type { Retention } from '../../protocol/types.js'
import type { Registrar } from '../cli.js'
import { examples, parseDurationOption, parsePositive } from '../options.js'
import { describeRetention } from '../format.js'

interface TrackOptions {
  table: string
  key: string
  feed?: string
  retainChanges?: number
  retainAge?: number
}

/** `tidemark track <db> --table t --key col`: capture an existing table's writes into a feed. */
export const registerTrack: Registrar = (program, cli) => {
  program
    .command('track')
    .description("capture every insert, update and delete of an existing table into a feed (triggers in the owner's database)")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL (it must exist and hold the table)')
    .requiredOption('--table <table>', 'table to capture')
    .requiredOption('--key <column>', "the row's key: the primary key's column(s), or a unique NOT NULL set; a,b for a composite key")
    .option('--feed <name>', 'feed to capture into (default: the table name)')
    .option('--retain-changes <n>', 'keep at least the newest n changes in the log', parsePositive)
    .option('--retain-age <duration>', 'keep at least the changes of this long (30s, 12h, 7d, or ms)', parseDurationOption)
    .addHelpText(
      'after',
      `
The rows already in the table become the feed's first transaction. Any client's writes to the
table are captured, in the writer's own transaction. SQLite: run track again after adding a
column. PostgreSQL: each change carries the row's columns as they are when it is written, so a
column added or dropped needs nothing (docs/postgres.md).
BLOB columns cannot be captured.
${examples([
  'tidemark track shop.db --table customers --key id',
  'tidemark track shop.db --table customer_v2 --key id --feed customers --retain-age 7d',
])}`,
    )
    .action(async (db: string, options: TrackOptions) => {
      const retention: Retention = {}
      if (options.retainChanges !== undefined) retention.changes = options.retainChanges
      if (options.retainAge !== undefined) retention.ageMs = options.retainAge
      const feedName = options.feed ?? options.table
      const { before, after } = await cli.withStore(db, {}, async (store) => {
        const before = await store.getFeed(feedName).catch((error: unknown) => {
          if (error instanceof UnknownFeedError) return undefined
          throw error
        })
        const after = await store.track({
          table: options.table,
          keyColumn: options.key,
          feed: feedName,
          ...(options.retainChanges !== undefined || options.retainAge !== undefined ? { retention } : {}),
        })
        return { before, after }
      })
      const columns = after.tracked?.columns.join(', ') ?? ''
      if (before?.tracked) {
        await cli.print(
          `feed "${after.name}" already captured table "${options.table}": capture triggers re-installed for columns ${columns}`,
        )
      } else {
        // The first track writes the table's rows as the feed's first transaction, into an empty feed,
        // so the head right after is (barring a concurrent writer) the number of rows captured.
        const captured = after.head - (before?.head ?? 0)
        await cli.print(
          `feed "${after.name}" now captures table "${options.table}" (key ${options.key}; columns ${columns}): ` +
            `${captured} existing row${captured === 1 ? '' : 's'} captured, head ${after.head}; the feed ${describeRetention(after.retention)}`,
        )
      }
    })
}
