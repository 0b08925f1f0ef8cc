import { checkExport } from '../../export/importer.js'
import type { Registrar } from '../cli.js'
import { readExportFile } from '../export-file.js'
import { exportKey, KEY_HELP } from '../export-key.js'
import { formatCount } from '../format.js'
import { examples } from '../options.js'
import { progressLine } from '../progress.js'
import { signatureText } from './import.js'

/** `tidemark inspect <file>`: an export file's header, and whether the file is sound, importing nothing. */
export const registerInspect: Registrar = (program, cli) => {
  program
    .command('inspect')
    .description("print an export file's header and check the whole file (checksum, signature, rows) without importing it")
    .argument('<file>', 'export file (from `tidemark export`)')
    .option('--key <key>', `${KEY_HELP}; with a key, an unsigned file or a wrong signature fails the check`)
    .option('--json', 'print the header and the check as one JSON object')
    .addHelpText('after', examples(['tidemark inspect customers.tidemark', 'tidemark inspect customers.tidemark --json | jq .position']))
    .action(async (file: string, options: { key?: string; json?: boolean }) => {
      const key = exportKey(options.key)
      const progress = progressLine(`inspect ${file}`)
      let checked: Awaited<ReturnType<typeof checkExport>>
      try {
        checked = await checkExport(readExportFile(file), {
          ...(key ? { key } : {}),
          onProgress: (p) => progress.update(p.phase, p.rows, p.total),
        })
      } finally {
        progress.done()
      }
      const { header: h, trailer, signature } = checked
      if (options.json) {
        await cli.print(JSON.stringify({ ...h, check: { ok: true, rows: trailer.rows, sha256: trailer.sha256, signature } }, null, 2))
        return
      }
      const rows: Array<[string, string]> = [
        ['feed', h.feed],
        ['epoch', h.epoch],
        ['position', String(h.position)],
        ['rows', formatCount(h.rows)],
        ['created', h.createdAt],
        ['source', h.source],
        ['format', `${h.format} ${h.version}, ${h.compression}, ${h.checksum}${h.signature ? `, ${h.signature}` : ''}`],
        ['sha256', trailer.sha256],
        ['check', `ok: ${formatCount(trailer.rows)} rows in key order, checksum matches, ${signatureText(signature)}`],
      ]
      const width = Math.max(...rows.map(([k]) => k.length))
      await cli.print(...rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`))
    })
}
