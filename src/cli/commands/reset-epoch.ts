import type { Registrar } from '../cli.js'
import { examples } from '../options.js'

/** `tidemark reset-epoch <db> <feed>`: a new history id; every replica re-bootstraps. */
export const registerResetEpoch: Registrar = (program, cli) => {
  program
    .command('reset-epoch')
    .description("give a feed a new epoch, so that every replica of it re-bootstraps from the snapshot")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<feed>', 'feed name')
    .addHelpText(
      'after',
      `
Use it when the feed's history can no longer be trusted (e.g. the source's data was rewritten
outside tidemark). A restore from an older copy is detected and reset on its own.
${examples(['tidemark reset-epoch shop.db customers'])}`,
    )
    .action(async (db: string, feed: string) => {
      const { before, after } = await cli.withStore(db, {}, async (store) => {
        const before = await store.getFeed(feed)
        const after = await store.resetEpoch(feed)
        return { before, after }
      })
      await cli.print(`feed "${feed}": epoch ${before.epoch} -> ${after.epoch} (replicas will re-bootstrap)`)
    })
}
