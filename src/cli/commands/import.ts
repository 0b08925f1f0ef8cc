import { BadRequestError } from '../../errors.js'
import type { ExportHeader } from '../../export/export-format.js'
import type { SignatureCheck } from '../../export/export-reader.js'
import type { ReplicaStore } from '../../store/replica-store.js'
import type { Registrar } from '../cli.js'
import { readExportFile } from '../export-file.js'
import { exportKey, KEY_HELP } from '../export-key.js'
import { formatCount } from '../format.js'
import { examples } from '../options.js'
import { progressLine } from '../progress.js'
import { interruptible } from '../interrupt.js'

interface ImportOptions {
  into: string
  source?: string
  name?: string
  feed?: string
  key?: string
  force?: boolean
}

/** `tidemark import <file> --into <db>`: seeds a replica from an export file, ready to catch up. */
export const registerImport: Registrar = (program, cli) => {
  program
    .command('import')
    .description('seed a replica from an export file; `tidemark replicate` then catches up from the file\'s position')
    .argument('<file>', 'export file (from `tidemark export`)')
    .requiredOption('--into <db>', "SQLite file of the replica (created when missing; may be your service's own database)")
    .option('--source <url>', 'the feed server the replica will catch up from, as you will give it to `tidemark replicate` (default: the one the file was exported from, when that was a URL)')
    .option('--name <name>', "the replica's name in the file (default: the file's feed)")
    .option('--feed <feed>', 'refuse the file unless it holds this feed')
    .option('--key <key>', `${KEY_HELP}; with a key, an unsigned file or a wrong signature is refused`)
    .option('--force', 'replace a replica that already holds a copy (atomically)')
    .addHelpText(
      'after',
      `
Checks the whole file first (checksum, signature, rows) and writes nothing unless it is sound; then
writes the rows beside the replica's current copy and swaps them in at once, at the file's epoch and
position. Any failure (a damaged file, a full disk, Ctrl-C) leaves the replica as it was. A replica
that already holds a copy is replaced only with --force.
${examples([
  'tidemark import customers.tidemark --into orders.db --source http://feeds.example.com:7480',
  'TIDEMARK_EXPORT_KEY=secret tidemark import customers.tidemark --into orders.db',
  'tidemark replicate http://feeds.example.com:7480 customers --into orders.db',
])}`,
    )
    .action(async (file: string, options: ImportOptions) => {
      const key = exportKey(options.key)
      const interrupt = interruptible(cli)
      const progress = progressLine(`import ${file}`)
      let store: ReplicaStore | undefined
      let failure: unknown
      try {
        const [{ checkExport, importExport }, { openReplicaStore }, { demoted }] = await Promise.all([
          import('../../export/importer.js'),
          import('../../store/open.js'),
          import('../../export/demoted-logger.js'),
        ])
        const common = {
          signal: interrupt.signal,
          onProgress: (p: { phase: string; rows: number; total: number }) => progress.update(p.phase, p.rows, p.total),
          ...(key ? { key } : {}),
          ...(options.feed !== undefined ? { feed: options.feed } : {}),
        }
        // The replica file is not even opened until the whole export file has been checked.
        const checked = await checkExport(readExportFile(file), common)
        const source = await sourceFor(checked.header, options.source)
        store = await openReplicaStore(options.into, { create: true, logger: demoted(cli.logger('import')) })
        const result = await importExport({
          ...common,
          open: () => readExportFile(file),
          store,
          source,
          checked,
          ...(options.name !== undefined ? { name: options.name } : {}),
          ...(options.force ? { force: true } : {}),
        })
        progress.done()
        const h = result.header
        await cli.print(
          `imported ${formatCount(h.rows)} rows of feed "${h.feed}" into ${options.into} as replica "${result.state.name}" at seq ${h.position} of epoch ${h.epoch} ` +
            `(${signatureText(result.signature)}); catch up with: tidemark replicate ${source} ${h.feed} --into ${options.into}` +
            (result.state.name === h.feed ? '' : ` --name ${result.state.name}`),
        )
      } catch (error) {
        failure = error
      } finally {
        progress.done()
        interrupt.dispose()
        await store?.close()
      }
      if (failure !== undefined) interrupt.fail(failure, `nothing imported (${options.into} is as it was)`)
    })
}

/**
 * The replica is bound to the source it will catch up from, named as `replicate` names it (the URL
 * without credentials or trailing slash): bound to anything else, `replicate` would refuse it.
 */
async function sourceFor(header: ExportHeader, given: string | undefined): Promise<string> {
  const url = given ?? (/^https?:\/\//i.test(header.source) ? header.source : undefined)
  if (url === undefined) {
    throw new BadRequestError(
      `the file was exported from ${header.source}, not from a feed server: give --source <url>, the feed server this replica will catch up from with \`tidemark replicate\``,
    )
  }
  const { HttpFeedSource } = await import('../../transport/http/http-feed-source.js')
  const source = new HttpFeedSource(url)
  await source.close()
  return source.description
}

export function signatureText(check: SignatureCheck): string {
  if (check === 'verified') return 'signature verified'
  if (check === 'unsigned') return 'not signed'
  return 'signed, signature not checked: give --key to check it'
}
