/**
 * The message tidemark publishes to a broker (docs/brokers.md, "Wire format"). One message holds
 * one or more whole source transactions of one feed, in seq order: the body is the changes as
 * protocol v1's NDJSON lines (`encodeChange`, the lines a feed server sends for `changes`), and
 * headers say what it holds so a relay can resume and a replica can seek without reading bodies.
 * The message id is `<epoch>:<last>` — one id per position in one history — so a broker that
 * deduplicates (JetStream's `Nats-Msg-Id`) drops a republished message.
 *
 * Decoding trusts nothing: a message that is not tidemark's, or whose headers and body disagree,
 * is reported as foreign and skipped; whether its changes follow on is the replica's business.
 */
import { encodeChange, type StoredChange } from '../../protocol/encoded.js'
import type { Change, Seq } from '../../protocol/types.js'
import { decodeChangesLine } from '../http/wire-lines.js'

/** Header names (NATS headers keep case; AMQP headers are a table with these keys). */
export const BROKER_HEADERS = {
  format: 'Tidemark-Format',
  feed: 'Tidemark-Feed',
  epoch: 'Tidemark-Epoch',
  first: 'Tidemark-First',
  last: 'Tidemark-Last',
} as const

/** The value of the format header: bumped if the body's encoding ever changes. */
export const BROKER_FORMAT = 'changes-ndjson-v1'

export interface BrokerBatch {
  feed: string
  epoch: string
  /** The seq of the first change in the message. */
  first: Seq
  /** The seq of the last change in the message: always the end of a source transaction. */
  last: Seq
  changes: Change[]
}

export interface EncodedBatch {
  id: string
  headers: Record<string, string>
  body: Buffer
}

export function messageId(epoch: string, last: Seq): string {
  return `${epoch}:${last}`
}

export function encodeBatch(batch: BrokerBatch): EncodedBatch {
  let body = ''
  for (const c of batch.changes) body += `${encodeChange(c)}\n`
  return {
    id: messageId(batch.epoch, batch.last),
    headers: {
      [BROKER_HEADERS.format]: BROKER_FORMAT,
      [BROKER_HEADERS.feed]: batch.feed,
      [BROKER_HEADERS.epoch]: batch.epoch,
      [BROKER_HEADERS.first]: String(batch.first),
      [BROKER_HEADERS.last]: String(batch.last),
    },
    body: Buffer.from(body, 'utf8'),
  }
}

export type DecodedMessage =
  | { kind: 'batch'; batch: BrokerBatch & { changes: StoredChange[] } }
  | { kind: 'foreign'; reason: string }

/** Reads a message's headers only: what the relay and the seek need. */
export function readHeaders(get: (name: string) => string | undefined): { feed: string; epoch: string; first: Seq; last: Seq } | undefined {
  if (get(BROKER_HEADERS.format) !== BROKER_FORMAT) return undefined
  const feed = get(BROKER_HEADERS.feed)
  const epoch = get(BROKER_HEADERS.epoch)
  const first = Number(get(BROKER_HEADERS.first))
  const last = Number(get(BROKER_HEADERS.last))
  if (!feed || !epoch || !Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first < 1 || last < first) return undefined
  return { feed, epoch, first, last }
}

/** Decodes a whole message; anything off makes it foreign, never an exception. */
export function decodeMessage(get: (name: string) => string | undefined, body: Uint8Array): DecodedMessage {
  const head = readHeaders(get)
  if (!head) return { kind: 'foreign', reason: 'not a tidemark message (no or malformed Tidemark-* headers)' }
  const changes: StoredChange[] = []
  try {
    const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
    for (const line of text.split('\n')) {
      if (line === '') continue
      const decoded = decodeChangesLine(line)
      if (decoded.kind !== 'item') return { kind: 'foreign', reason: 'the body holds a line that is not a change' }
      changes.push(decoded.item)
    }
  } catch (error) {
    return { kind: 'foreign', reason: `the body is not protocol v1 change lines: ${(error as Error).message}` }
  }
  const first = changes[0]
  const last = changes[changes.length - 1]
  if (!first || !last || first.seq !== head.first || last.seq !== head.last) {
    return { kind: 'foreign', reason: `the headers say ${head.first}–${head.last} but the body does not` }
  }
  return { kind: 'batch', batch: { ...head, changes } }
}

/**
 * Cuts a page of whole source transactions into messages of whole transactions, each at most
 * `maxChanges` changes and about `maxBytes` of body unless one transaction alone is larger.
 */
export function splitIntoBatches(feed: string, epoch: string, changes: readonly Change[], maxChanges: number, maxBytes: number): BrokerBatch[] {
  const out: BrokerBatch[] = []
  let current: Change[] = []
  let txStart = 0 // index in `current` where the open transaction began
  let bytes = 0
  const close = (upTo: number): void => {
    const taken = current.slice(0, upTo)
    current = current.slice(upTo)
    txStart -= upTo
    bytes = 0
    for (const c of current) bytes += approxBytes(c)
    out.push({ feed, epoch, first: (taken[0] as Change).seq, last: (taken[taken.length - 1] as Change).seq, changes: taken })
  }
  for (const c of changes) {
    current.push(c)
    bytes += approxBytes(c)
    if (c.seq === c.tx) {
      // A transaction ended. Keep it in this message if it fits; else cut before it (if anything precedes it).
      if ((current.length > maxChanges || bytes > maxBytes) && txStart > 0) close(txStart)
      if (current.length >= maxChanges || bytes >= maxBytes) close(current.length)
      txStart = current.length
    }
  }
  if (txStart > 0) close(txStart)
  return out
}

function approxBytes(c: Change): number {
  const text = (c as Partial<StoredChange>).dataText
  return 64 + c.key.length + (typeof text === 'string' ? text.length : c.data === undefined ? 0 : 64)
}
