/**
 * Decoding protocol v1's lines on the replica's side. A change or a row keeps its `data` as the
 * JSON text the server sent, byte for byte (row hashes are computed over that text), and is not
 * parsed: the fast decoders read the exact shape `encodeChange` / `encodeRow` write
 * (src/protocol/encoded.ts) by position, and JSON.parse only the key. A line in any other shape
 * (another server, a proxy that re-serialized it) is parsed whole and its data re-serialized.
 * Every field is checked; anything off throws ProtocolError saying what.
 */
import { ProtocolError } from '../../errors.js'
import { StoredChange, StoredRow } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import type { Op, Seq } from '../../protocol/types.js'

/** A decoded line of a listing: an item, the end line, or an error line (the listing failed). */
export type ListingLine<T> =
  | { kind: 'item'; item: T }
  | { kind: 'end'; end: Record<string, unknown> }
  | { kind: 'error'; error: Record<string, unknown> }

const QUOTE = 0x22
const BACKSLASH = 0x5c
const CLOSE_BRACE = 0x7d
const ZERO = 0x30
const NINE = 0x39

// ---------------------------------------------------------------------------------------------
// changes

/** One line of a `changes` listing. */
export function decodeChangesLine(line: string): ListingLine<StoredChange> {
  const fast = fastChange(line)
  if (fast) return { kind: 'item', item: checkChange(fast) }
  const value = parseLine(line)
  if (value.end === true) return { kind: 'end', end: value }
  if (typeof value.error === 'string') return { kind: 'error', error: value }
  return { kind: 'item', item: checkChange(changeFromObject(value, line)) }
}

/** `{"seq":N,"key":K,"op":"upsert","data":D,"tx":N,"ts":N}` (deletes without `,"data":D`), or undefined. */
function fastChange(line: string): StoredChange | undefined {
  if (!line.startsWith('{"seq":')) return undefined
  const seqEnd = digitsEnd(line, 7)
  if (seqEnd < 0 || !line.startsWith(',"key":"', seqEnd)) return undefined
  const keyStart = seqEnd + 7
  const keyEnd = stringEnd(line, keyStart)
  if (keyEnd < 0) return undefined
  const key = parseKey(line, keyStart, keyEnd)
  if (key === undefined) return undefined
  let op: Op
  if (line.startsWith(',"op":"upsert"', keyEnd)) op = 'upsert'
  else if (line.startsWith(',"op":"delete"', keyEnd)) op = 'delete'
  else return undefined
  const afterOp = keyEnd + 14

  // From the end: `,"tx":<digits>,"ts":<digits>}`.
  const last = line.length - 1
  if (line.charCodeAt(last) !== CLOSE_BRACE) return undefined
  const tsStart = digitsStart(line, last)
  if (tsStart < 0 || !endsWithAt(line, ',"ts":', tsStart)) return undefined
  const txEnd = tsStart - 6
  const txStart = digitsStart(line, txEnd)
  if (txStart < 0 || !endsWithAt(line, ',"tx":', txStart)) return undefined
  const suffixStart = txStart - 6

  let dataText: string | null = null
  if (suffixStart === afterOp) {
    if (op !== 'delete') return undefined // an upsert without data, or a delete with: the slow path says so
  } else {
    if (op !== 'upsert' || !line.startsWith(',"data":', afterOp) || suffixStart <= afterOp + 8) return undefined
    dataText = line.slice(afterOp + 8, suffixStart)
  }
  return new StoredChange(
    Number(line.slice(7, seqEnd)),
    key,
    op,
    Number(line.slice(txStart, txEnd)),
    Number(line.slice(tsStart, last)),
    dataText,
  )
}

function changeFromObject(value: Record<string, unknown>, line: string): StoredChange {
  const { seq, key, op, tx, ts } = value
  if (typeof seq !== 'number' || typeof key !== 'string' || typeof op !== 'string' || typeof tx !== 'number' || typeof ts !== 'number') {
    throw new ProtocolError(`a change line needs numbers seq, tx, ts and strings key, op; got ${excerpt(line)}`)
  }
  if (op !== 'upsert' && op !== 'delete') throw new ProtocolError(`change ${seq} has op ${JSON.stringify(op)}, not "upsert" or "delete"`)
  const hasData = Object.hasOwn(value, 'data')
  if (op === 'upsert' && !hasData) throw new ProtocolError(`change ${seq} is an upsert without data`)
  if (op === 'delete' && hasData) throw new ProtocolError(`change ${seq} is a delete with data`)
  return new StoredChange(seq, key, op, tx, ts, hasData ? JSON.stringify(value.data) : null)
}

function checkChange(c: StoredChange): StoredChange {
  if (!isPositiveSeq(c.seq)) throw new ProtocolError(`a change has seq ${c.seq}, not a positive whole number`)
  if (!isPositiveSeq(c.tx) || c.tx < c.seq) throw new ProtocolError(`change ${c.seq} has tx ${c.tx}; a tx is the seq of its transaction's last change, so ≥ ${c.seq}`)
  if (!Number.isSafeInteger(c.ts) || c.ts < 0) throw new ProtocolError(`change ${c.seq} has ts ${c.ts}, not a time in ms`)
  checkKey(c.key, `change ${c.seq}`)
  if (c.dataText !== null) checkDataText(c.dataText, `change ${c.seq}`)
  return c
}

// ---------------------------------------------------------------------------------------------
// rows

/** One line of a `snapshot` listing. */
export function decodeSnapshotLine(line: string): ListingLine<StoredRow> {
  const fast = fastRow(line, 0, line.length)
  if (fast) return { kind: 'item', item: checkRow(fast) }
  const value = parseLine(line)
  if (value.end === true) return { kind: 'end', end: value }
  if (typeof value.error === 'string') return { kind: 'error', error: value }
  return { kind: 'item', item: checkRow(rowFromObject(value)) }
}

/** `{"key":K,"seq":N,"data":D}` or `{"key":K,"seq":N,"deleted":true}` filling text[start, end), or undefined. */
function fastRow(text: string, start: number, end: number): StoredRow | undefined {
  if (!text.startsWith('{"key":"', start) || text.charCodeAt(end - 1) !== CLOSE_BRACE) return undefined
  const keyStart = start + 7
  const keyEnd = stringEnd(text, keyStart)
  if (keyEnd < 0 || !text.startsWith(',"seq":', keyEnd)) return undefined
  const key = parseKey(text, keyStart, keyEnd)
  if (key === undefined) return undefined
  const seqStart = keyEnd + 7
  const seqEnd = digitsEnd(text, seqStart)
  if (seqEnd < 0) return undefined
  const seq = Number(text.slice(seqStart, seqEnd))
  if (text.startsWith(',"data":', seqEnd) && end - 1 > seqEnd + 8) return new StoredRow(key, seq, text.slice(seqEnd + 8, end - 1))
  if (seqEnd + 16 === end && text.startsWith(',"deleted":true}', seqEnd)) return new StoredRow(key, seq, null)
  return undefined
}

function rowFromObject(value: Record<string, unknown>): StoredRow {
  const { key, seq } = value
  if (typeof key !== 'string' || typeof seq !== 'number') {
    throw new ProtocolError(`a row needs a string key and a number seq; got ${excerpt(JSON.stringify(value))}`)
  }
  const hasData = Object.hasOwn(value, 'data')
  if (hasData === (value.deleted === true)) {
    throw new ProtocolError(`row ${JSON.stringify(key)} must have either data or "deleted": true`)
  }
  return new StoredRow(key, seq, hasData ? JSON.stringify(value.data) : null)
}

function checkRow(r: StoredRow): StoredRow {
  checkKey(r.key, 'a row')
  if (!isPositiveSeq(r.seq)) throw new ProtocolError(`row ${JSON.stringify(r.key)} has seq ${r.seq}, not a positive whole number`)
  if (r.dataText !== null) checkDataText(r.dataText, `row ${JSON.stringify(r.key)}`)
  return r
}

/** The body of `POST rows`: `{"epoch":E,"head":H,"rows":[row,…]}`. */
export interface RowsDocument {
  epoch: string
  head: Seq
  rows: StoredRow[]
}

export function decodeRowsDocument(text: string): RowsDocument {
  const fast = fastRowsDocument(text)
  if (fast) return { ...fast, rows: fast.rows.map(checkRow) }
  const value = parseLine(text)
  const { epoch, head, rows } = value
  if (typeof epoch !== 'string' || typeof head !== 'number' || !Array.isArray(rows)) {
    throw new ProtocolError(`the rows response needs epoch, head and rows; got ${excerpt(text)}`)
  }
  return {
    epoch,
    head,
    rows: rows.map((r: unknown) => {
      if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new ProtocolError(`a row is not an object: ${excerpt(JSON.stringify(r))}`)
      return checkRow(rowFromObject(r as Record<string, unknown>))
    }),
  }
}

/** The exact shape the feed server writes, read by position; undefined for anything else. */
function fastRowsDocument(text: string): RowsDocument | undefined {
  if (!text.startsWith('{"epoch":"')) return undefined
  const epochEnd = stringEnd(text, 9)
  if (epochEnd < 0 || !text.startsWith(',"head":', epochEnd)) return undefined
  const epoch = parseKey(text, 9, epochEnd)
  const headEnd = digitsEnd(text, epochEnd + 8)
  if (epoch === undefined || headEnd < 0 || !text.startsWith(',"rows":[', headEnd)) return undefined
  const head = Number(text.slice(epochEnd + 8, headEnd))
  const rows: StoredRow[] = []
  let i = headEnd + 9
  if (text.startsWith(']}', i)) return i + 2 === text.length ? { epoch, head, rows } : undefined
  for (;;) {
    const end = rowEnd(text, i)
    if (end < 0) return undefined
    const row = fastRow(text, i, end)
    if (!row) return undefined
    rows.push(row)
    const next = text.charCodeAt(end)
    if (next === 0x2c /* , */) {
      i = end + 1
      continue
    }
    return text.startsWith(']}', end) && end + 2 === text.length ? { epoch, head, rows } : undefined
  }
}

/** The index just past the object that starts at `start` (brackets counted outside strings), or -1. */
function rowEnd(text: string, start: number): number {
  if (text.charCodeAt(start) !== 0x7b /* { */) return -1
  let depth = 0
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      i = stringEnd(text, i) - 1
      if (i < 0) return -1
    } else if (c === 0x7b || c === 0x5b /* [ */) depth++
    else if (c === CLOSE_BRACE || c === 0x5d /* ] */) {
      depth--
      if (depth === 0) return i + 1
    }
  }
  return -1
}

// ---------------------------------------------------------------------------------------------
// shared pieces

/** Parses a whole line (or a JSON body) into an object; ProtocolError for anything else. */
export function parseLine(line: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new ProtocolError(`not a JSON line: ${excerpt(line)}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError(`expected a JSON object, got ${excerpt(line)}`)
  }
  return value as Record<string, unknown>
}

/** The first bytes of some text, quoted, for a message. */
export function excerpt(text: string, max = 200): string {
  return text.length <= max ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, max))}…`
}

export function isPositiveSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0
}

export function isSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

function checkKey(key: string, what: string): void {
  if (key.length === 0) throw new ProtocolError(`${what} has an empty key`)
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long keys need counting.
  if (key.length * 3 > LIMITS.keyBytes && Buffer.byteLength(key, 'utf8') > LIMITS.keyBytes) {
    throw new ProtocolError(`${what} has a key of ${Buffer.byteLength(key, 'utf8')} bytes, over the protocol's ${LIMITS.keyBytes}`)
  }
  if (!key.isWellFormed()) throw new ProtocolError(`${what} has a key with a lone surrogate`)
}

/**
 * A cheap look at data text that is not parsed: its first and last characters must fit one JSON
 * value (an object, an array, a string, a literal or a number). It catches a line cut short or
 * spliced wrongly without paying for a parse; the text itself is kept as it came.
 */
function checkDataText(text: string, what: string): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long texts need counting.
  if (text.length > LIMITS.dataBytes / 3 && (text.length > LIMITS.dataBytes || Buffer.byteLength(text, 'utf8') > LIMITS.dataBytes)) {
    throw new ProtocolError(`${what} has data of ${Buffer.byteLength(text, 'utf8')} bytes, over the protocol's ${LIMITS.dataBytes}: refused, nothing of it applied`)
  }
  let a = 0
  let b = text.length - 1
  while (a <= b && isJsonSpace(text.charCodeAt(a))) a++
  while (b >= a && isJsonSpace(text.charCodeAt(b))) b--
  if (a > b) throw new ProtocolError(`${what} has empty data`)
  const first = text.charCodeAt(a)
  const last = text.charCodeAt(b)
  let ok: boolean
  switch (first) {
    case 0x7b: // {
      ok = last === CLOSE_BRACE
      break
    case 0x5b: // [
      ok = last === 0x5d
      break
    case QUOTE: {
      // The closing quote is not escaped: an even number of backslashes precede it.
      let slashes = 0
      while (b - 1 - slashes > a && text.charCodeAt(b - 1 - slashes) === BACKSLASH) slashes++
      ok = b > a && last === QUOTE && slashes % 2 === 0
      break
    }
    default: {
      const word = text.slice(a, b + 1)
      ok = word === 'true' || word === 'false' || word === 'null' || /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(word)
    }
  }
  if (!ok) throw new ProtocolError(`${what} has data that is not one JSON value: ${excerpt(text, 80)}`)
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

/** The index just past the JSON string whose opening quote is at `start`, or -1. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === BACKSLASH) i++
    else if (c === QUOTE) return i + 1
  }
  return -1
}

/** The JSON string text[start, end) (quotes included), decoded; undefined when it is not valid JSON. */
function parseKey(text: string, start: number, end: number): string | undefined {
  // Most keys have no escape: then the text between the quotes is the string.
  let plain = true
  for (let i = start + 1; i < end - 1; i++) {
    const c = text.charCodeAt(i)
    if (c === BACKSLASH || c < 0x20) {
      plain = false
      break
    }
  }
  if (plain) return text.slice(start + 1, end - 1)
  try {
    return JSON.parse(text.slice(start, end)) as string
  } catch {
    return undefined
  }
}

/** The end of a run of 1–16 decimal digits (no leading zero) starting at `start`, or -1. */
function digitsEnd(text: string, start: number): number {
  let i = start
  while (i < text.length && isDigit(text.charCodeAt(i))) i++
  return wellFormedNumber(text, start, i) ? i : -1
}

/** The start of a run of digits that ends just before `end`, or -1. */
function digitsStart(text: string, end: number): number {
  let i = end
  while (i > 0 && isDigit(text.charCodeAt(i - 1))) i--
  return wellFormedNumber(text, i, end) ? i : -1
}

function wellFormedNumber(text: string, start: number, end: number): boolean {
  const n = end - start
  return n >= 1 && n <= 16 && (n === 1 || text.charCodeAt(start) !== ZERO)
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE
}

/** Whether `text` has `piece` ending exactly at `end`. */
function endsWithAt(text: string, piece: string, end: number): boolean {
  return end >= piece.length && text.startsWith(piece, end - piece.length)
}
