import type { Retention } from '../../protocol/types.js'
import type { Registrar } from '../cli.js'
import { examples, parseDurationOption, parsePositive } from '../options.js'
import { describeRetention } from '../format.js'

interface RetentionOptions {
  changes?: number
  age?: number
  clear?: boolean
}

/** `tidemark retention <db> <feed> [--changes N] [--age 7d]`: how much of the log a feed keeps. */
export const registerRetention: Registrar = (program, cli) => {
  program
    .command('retention')
    .description("show or set how much of a feed's log is kept (older changes are pruned by maintenance)")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<feed>', 'feed name')
    .option('--changes <n>', 'keep at least the newest n changes', parsePositive)
    .option('--age <duration>', 'keep at least the changes of this long (30s, 12h, 7d, or ms)', parseDurationOption)
    .option('--clear', 'remove the current limits first (without --changes or --age: keep the whole log)')
    .addHelpText(
      'after',
      `
A limit you do not give is kept as it was. A replica further behind than the log keeps must
re-bootstrap from the snapshot, so keep at least as much as your slowest replica may lag.
${examples([
  'tidemark retention shop.db customers',
  'tidemark retention shop.db customers --changes 100000 --age 7d',
  'tidemark retention shop.db customers --clear --age 30d',
])}`,
    )
    .action(async (db: string, feed: string, options: RetentionOptions) => {
      const changing = options.clear || options.changes !== undefined || options.age !== undefined
      const { before, after } = await cli.withStore(db, {}, async (store) => {
        const before = await store.getFeed(feed)
        if (!changing) return { before, after: before }
        const retention: Retention = options.clear ? {} : { ...before.retention }
        if (options.changes !== undefined) retention.changes = options.changes
        if (options.age !== undefined) retention.ageMs = options.age
        // store.ensureFeed refuses a feed captured from a table (it wants a writer for it), so for
        // those the retention goes through track, which re-installs the same capture with it.
        const after = before.tracked
          ? await store.track({ table: before.tracked.table, keyColumn: before.tracked.keyColumn, feed, retention })
          : await store.ensureFeed(feed, { retention })
        return { before, after }
      })
      if (!changing) await cli.print(`feed "${feed}" ${describeRetention(before.retention)}`)
      else await cli.print(`feed "${feed}" now ${describeRetention(after.retention)} (before: ${describeRetention(before.retention).replace(/^keeps /, '')})`)
    })
}
