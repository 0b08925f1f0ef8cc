import { BadRequestError } from '../errors.js'
import { keyBytes } from '../export/export-writer.js'

/** The shared signing key: --key, else $TIDEMARK_EXPORT_KEY (which keeps it out of the process list). */
export function exportKey(option: string | undefined): Uint8Array | undefined {
  const fromOption = option !== undefined
  const text = option ?? process.env.TIDEMARK_EXPORT_KEY
  if (text === undefined) return undefined
  // An empty key is a mistake (a variable that is not set), not "no key": taken as no key, a signed
  // file would import with its signature unchecked.
  if (text.trim() === '') {
    const where = fromOption ? '--key' : 'TIDEMARK_EXPORT_KEY'
    throw new BadRequestError(`${where} is empty: give the shared signing key, or leave ${where} out entirely to work without one`)
  }
  return keyBytes(text)
}

export const KEY_HELP = 'shared key for HMAC-SHA-256 signatures (default: $TIDEMARK_EXPORT_KEY, which keeps it out of the process list)'
