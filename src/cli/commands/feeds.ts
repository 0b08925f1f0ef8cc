import type { FeedInfo } from '../../protocol/types.js'
import type { Registrar } from '../cli.js'
import { formatRetention } from '../format.js'
import { examples } from '../options.js'

/** `tidemark feeds <db>`: the feeds as a table or JSON, read only. */
export const registerFeeds: Registrar = (program, cli) => {
  program
    .command('feeds')
    .description("list the source's feeds (reads only: no retention, no schema change)")
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .option('--json', 'print a JSON array of feeds instead of a table')
    .addHelpText(
      'after',
      `
Columns: head is the last seq written, min-seq the oldest seq the log keeps, keys the live keys
and digest-seq the seq the digest (and keys) is exact at. This command reads: it applies no retention
(\`tidemark serve\` does) and changes no schema, and it only folds the log into the digest when a feed
server has not yet, as a server would. A file that is not a source (a replica, say) is named as such
and left unchanged.
${examples(['tidemark feeds shop.db', "tidemark feeds shop.db --json | jq '.[] | {name, head}'"])}`,
    )
    .action(async (db: string, options: { json?: boolean }) => {
      const feeds = await cli.readSource(db, 'all', (store) => store.listFeeds())
      if (options.json) await cli.print(JSON.stringify(feeds, null, 2))
      else if (feeds.length === 0) await cli.print('no feeds yet: create one with `tidemark write` or `tidemark track`')
      else await cli.print(...table(feeds))
    })
}

function table(feeds: FeedInfo[]): string[] {
  const header = ['NAME', 'EPOCH', 'HEAD', 'MIN-SEQ', 'KEYS', 'DIGEST-SEQ', 'RETENTION', 'TRACKED']
  const numeric = new Set([2, 3, 4, 5])
  const rows = feeds.map((f) => [
    f.name,
    f.epoch,
    String(f.head),
    String(f.minSeq),
    String(f.keys),
    String(f.digestSeq),
    formatRetention(f.retention),
    f.tracked ? `${f.tracked.table}.${f.tracked.keyColumn}${f.tracked.active ? '' : ' (untracked)'}` : '-',
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  const format = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [format(header), ...rows.map(format)]
}
