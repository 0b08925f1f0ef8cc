import { readFileSync } from 'node:fs'
import { BadRequestError } from '../errors.js'
import type { HttpFeedSourceOptions } from '../transport/http/http-feed-source.js'
import { nonEmpty } from './options.js'

export const CA_HELP = 'for an https:// feed server: trust the certificate authorities in this PEM file (default: $TIDEMARK_CA, else the system\'s)'

/**
 * How a command reaches a feed server: the bearer token (`--token`, else $TIDEMARK_TOKEN) and, for
 * https://, the CA file to trust (`--ca`, else $TIDEMARK_CA). An empty `--ca` is an error, not
 * "the system's CAs".
 */
export function feedServerClient(options: { token?: string; ca?: string }): HttpFeedSourceOptions {
  const token = options.token ?? nonEmpty(process.env.TIDEMARK_TOKEN)
  const caFile = options.ca ?? nonEmpty(process.env.TIDEMARK_CA)
  const out: HttpFeedSourceOptions = {}
  if (token !== undefined) out.token = token
  if (caFile !== undefined) {
    if (caFile.trim() === '') throw new BadRequestError('--ca is empty: give a PEM file of the certificate authorities to trust, or leave it out')
    let pem: Buffer
    try {
      pem = readFileSync(caFile)
    } catch (error) {
      throw new BadRequestError(`cannot read the CA file ${caFile}: ${(error as Error).message}`, { cause: error })
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new BadRequestError(`${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
    out.ca = pem
  }
  return out
}
