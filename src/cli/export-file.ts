import { createReadStream } from 'node:fs'
import type { ExportInput } from '../export/export-reader.js'

/** An export file's bytes from disk, read in large pieces (the reader holds one at a time). */
export function readExportFile(path: string): ExportInput {
  return createReadStream(path, { highWaterMark: 256 * 1024 })
}
