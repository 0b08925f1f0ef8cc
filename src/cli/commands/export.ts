import { createWriteStream, existsSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Option } from 'commander'
import { BadRequestError } from '../../errors.js'
import { COMPRESSIONS, DEFAULT_COMPRESSION, type Compression } from '../../export/export-format.js'
import type { SourceStore } from '../../store/store.js'
import type { FeedSource } from '../../transport/feed-source.js'
import type { Registrar } from '../cli.js'
import { exportKey, KEY_HELP } from '../export-key.js'
import { formatCount } from '../format.js'
import { examples, parsePositive } from '../options.js'
import { progressLine } from '../progress.js'
import { interruptible } from '../interrupt.js'
import { CA_HELP, feedServerClient } from '../feed-server-client.js'

interface ExportOptions {
  output: string
  key?: string
  token?: string
  ca?: string
  compression: Compression
  snapshotChunk?: number
}

/** `tidemark export <db|url> <feed> -o <file>`: the feed's state at one position, in one file. */
export const registerExport: Registrar = (program, cli) => {
  program
    .command('export')
    .description("write a feed's state at one position to a file, for seeding a replica where there is no network")
    .argument('<source>', "the source's SQLite file, or a feed server's URL (http://host:7480)")
    .argument('<feed>', 'feed name')
    .requiredOption('-o, --output <file>', 'the export file to write (replaced only once it is complete)')
    .option('--key <key>', KEY_HELP)
    .option('--token <token>', 'bearer token for a feed server (default: $TIDEMARK_TOKEN)')
    .option('--ca <file>', CA_HELP)
    .addOption(new Option('--compression <kind>', 'how the rows are compressed').choices(COMPRESSIONS).default(DEFAULT_COMPRESSION))
    .option('--snapshot-chunk <n>', 'rows per snapshot read', parsePositive)
    .addHelpText(
      'after',
      `
Reads the feed in short chunks while the owner keeps writing, and writes the rows exactly as the
feed's state was at one position (the file's header says which). It first builds a scratch copy
beside the output file (about the size of the feed's state in SQLite; deleted when done). Import
the file with \`tidemark import\`, then catch up with \`tidemark replicate\` from that position.
Progress is shown on a terminal; the summary line goes to stdout.
${examples([
  'tidemark export shop.db customers -o customers.tidemark',
  'TIDEMARK_EXPORT_KEY=secret tidemark export http://127.0.0.1:7480 customers -o customers.tidemark',
  'tidemark inspect customers.tidemark',
])}`,
    )
    .action(async (from: string, feed: string, options: ExportOptions) => {
      const key = exportKey(options.key)
      const output = resolve(options.output)
      if (!existsSync(dirname(output))) throw new BadRequestError(`no such folder: ${dirname(output)} (where the export file ${options.output} would go)`)
      const partial = join(dirname(output), `.${basename(output)}.partial-${process.pid}`)
      const interrupt = interruptible(cli)
      const progress = progressLine(`export ${feed}`)
      let store: SourceStore | undefined
      let close: (() => Promise<void>) | undefined
      let failure: unknown
      try {
        const { prepareExport } = await import('../../export/exporter.js')
        let source: FeedSource
        if (/^https?:\/\//i.test(from)) {
          const { HttpFeedSource } = await import('../../transport/http/http-feed-source.js')
          const http = new HttpFeedSource(from, feedServerClient(options))
          close = () => http.close()
          source = http
        } else {
          const { LocalFeedSource } = await import('../../transport/local-feed-source.js')
          store = await cli.openStore(from)
          source = new LocalFeedSource(store)
        }
        const prepared = await prepareExport({
          source,
          feed,
          scratchDir: dirname(output),
          compression: options.compression,
          signal: interrupt.signal,
          logger: cli.logger('export'),
          onProgress: (p) => progress.update(p.phase, p.rows, p.total),
          ...(key ? { key } : {}),
          ...(options.snapshotChunk !== undefined ? { snapshotChunk: options.snapshotChunk } : {}),
        })
        try {
          await pipeline(Readable.from(prepared.body), createWriteStream(partial, { flags: 'wx' }), { signal: interrupt.signal })
        } catch (error) {
          rmSync(partial, { force: true })
          throw error
        } finally {
          await prepared.dispose()
        }
        renameSync(partial, output)
        progress.done()
        const h = prepared.header
        await cli.print(
          `exported ${formatCount(h.rows)} rows of feed "${h.feed}" at position ${h.position} (epoch ${h.epoch}) to ${options.output}: ` +
            `${formatCount(statSync(output).size)} bytes, ${h.signature === null ? 'unsigned' : 'signed'}`,
        )
      } catch (error) {
        failure = error
      } finally {
        progress.done()
        interrupt.dispose()
        await store?.close()
        await close?.()
      }
      if (failure !== undefined) interrupt.fail(failure, `no file written (${options.output} is as it was)`)
    })
}
