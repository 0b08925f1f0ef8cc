import type { Registrar } from '../cli.js'
import { examples } from '../options.js'

/** `tidemark untrack <db> <feed>`: remove a table's capture; the feed and its log stay. */
export const registerUntrack: Registrar = (program, cli) => {
  program
    .command('untrack')
    .description("stop capturing a table into a feed (drops the triggers; the feed and its log stay for replicas)")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<feed>', 'feed that captures a table')
    .addHelpText('after', examples(['tidemark untrack shop.db customers']))
    .action(async (db: string, feed: string) => {
      const table = await cli.withStore(db, {}, async (store) => {
        const info = await store.getFeed(feed)
        await store.untrack(feed)
        return info.tracked?.table
      })
      await cli.print(`feed "${feed}" no longer captures table "${table ?? '?'}": later writes to the table are not in the feed`)
    })
}
