/**
 * The part of a replica the benchmarks need: `GET /v1/feeds/:feed/changes` over one kept-alive
 * connection, the NDJSON body split into lines and every line parsed, as a replica does before
 * applying them.
 */
import { Client } from 'undici'
import { nowMs } from '../harness.js'

export interface ChangesResponse {
  /** Changes received (the end line not counted). */
  changes: number
  /** The end line's `last`: where the next request starts. */
  last: number
  head: number
  /** When the last byte of the body was parsed (nowMs clock). */
  receivedAt: number
}

interface Line {
  seq?: number
  end?: true
  last?: number
  head?: number
  error?: string
  message?: string
}

export class ChangesClient {
  private readonly client: Client
  private readonly headers: Record<string, string>

  /** `ca`: for an https:// server, the certificate authority to trust (PEM); `token`: sent as a bearer token. */
  constructor(baseUrl: string, options: { ca?: Buffer; token?: string } = {}) {
    this.client = new Client(baseUrl, { keepAliveTimeout: 60_000, ...(options.ca ? { connect: { ca: options.ca } } : {}) })
    this.headers = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }
  }

  /** One request: `after`, `limit` and `wait` as in the protocol. Throws on an error status or line, or a cut body. */
  async changes(feed: string, after: number, options: { limit?: number; wait?: number } = {}): Promise<ChangesResponse> {
    let path = `/v1/feeds/${encodeURIComponent(feed)}/changes?after=${after}`
    if (options.limit !== undefined) path += `&limit=${options.limit}`
    if (options.wait !== undefined) path += `&wait=${options.wait}`
    const res = await this.client.request({ method: 'GET', path, headers: this.headers })
    if (res.statusCode !== 200) {
      throw new Error(`GET ${path}: HTTP ${res.statusCode}: ${await res.body.text()}`)
    }
    res.body.setEncoding('utf8')
    let rest = ''
    let changes = 0
    let expected = after + 1
    let end: Line | undefined
    const take = (text: string): void => {
      if (text.length === 0) return
      const line = JSON.parse(text) as Line
      if (line.seq !== undefined) {
        if (line.seq !== expected) throw new Error(`GET ${path}: change ${line.seq} where ${expected} was due`)
        expected++
        changes++
      } else if (line.end) {
        end = line
      } else {
        throw new Error(`GET ${path}: ${line.error ?? 'unexpected line'}: ${line.message ?? text}`)
      }
    }
    for await (const chunk of res.body as AsyncIterable<string>) {
      const lines = (rest + chunk).split('\n')
      rest = lines.pop() as string
      for (const line of lines) take(line)
    }
    take(rest)
    const receivedAt = nowMs()
    if (!end) throw new Error(`GET ${path}: the body ended without its end line`)
    return { changes, last: end.last as number, head: end.head as number, receivedAt }
  }

  async close(): Promise<void> {
    await this.client.close()
  }
}
