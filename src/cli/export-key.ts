import { keyBytes } from '../export/export-writer.js'

/** The shared signing key: --key, else $TIDEMARK_EXPORT_KEY (which keeps it out of the process list). */
export function exportKey(option: string | undefined): Uint8Array | undefined {
  const text = option ?? process.env.TIDEMARK_EXPORT_KEY
  return text === undefined || text === '' ? undefined : keyBytes(text)
}

export const KEY_HELP = 'shared key for HMAC-SHA-256 signatures (default: $TIDEMARK_EXPORT_KEY, which keeps it out of the process list)'
