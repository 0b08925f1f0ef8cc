import { createReadStream } from 'node:fs'
import { BadRequestError } from '../errors.js'
import type { ExportInput } from '../export/export-reader.js'

/**
 * An export file's bytes from disk, read in large pieces (the reader holds one at a time). A file
 * that cannot be read (missing, a folder, no permission) is the operator's input error, said in
 * one line.
 */
export async function* readExportFile(path: string): ExportInput {
  const stream = createReadStream(path, { highWaterMark: 256 * 1024 })
  try {
    for await (const chunk of stream) yield chunk as Buffer
  } catch (error) {
    const e = error as NodeJS.ErrnoException
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a folder' : e.code === 'EACCES' ? 'permission denied' : e.message
    throw new BadRequestError(`cannot read the export file ${path}: ${why}`, { cause: error })
  } finally {
    stream.destroy()
  }
}
