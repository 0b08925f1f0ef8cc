import type { Change, Json, Op, Seq, StateRow } from './types.js'

/**
 * Changes and rows as a store reads them: `data` stays JSON text until somebody asks for it, so
 * the feed server can put it on the wire without parsing and re-serializing every row.
 */
class StoredChangeRecord {
  private parsed: Json | undefined
  constructor(
    readonly seq: Seq,
    readonly key: string,
    readonly op: Op,
    readonly tx: Seq,
    readonly ts: number,
    readonly dataText: string | null,
  ) {}

  get data(): Json | undefined {
    if (this.dataText === null) return undefined
    return (this.parsed ??= JSON.parse(this.dataText) as Json)
  }

  toJSON(): Change {
    return encodeable(this as unknown as StoredChange)
  }
}

/**
 * A change as a store read it: its data kept as the stored JSON text, parsed on first use. Typed as a
 * `Change` (a union on `op`) so that users narrow it; the constructor pairs `op` and `dataText` as
 * the store does (an upsert has data, a delete has none).
 */
export type StoredChange = StoredChangeRecord & Change
export const StoredChange = StoredChangeRecord as unknown as new (seq: Seq, key: string, op: Op, tx: Seq, ts: number, dataText: string | null) => StoredChange

export class StoredRow implements StateRow {
  private parsed: Json | undefined
  constructor(
    readonly key: string,
    readonly seq: Seq,
    readonly dataText: string | null,
  ) {}

  get data(): Json | undefined {
    if (this.dataText === null) return undefined
    return (this.parsed ??= JSON.parse(this.dataText) as Json)
  }

  get deleted(): true | undefined {
    return this.dataText === null ? true : undefined
  }

  toJSON(): StateRow {
    return this.dataText === null ? { key: this.key, seq: this.seq, deleted: true } : { key: this.key, seq: this.seq, data: this.data as Json }
  }
}

function encodeable(c: StoredChange): Change {
  return c.op === 'upsert' ? { seq: c.seq, key: c.key, op: c.op, data: c.data, tx: c.tx, ts: c.ts } : { seq: c.seq, key: c.key, op: c.op, tx: c.tx, ts: c.ts }
}

/** One NDJSON line (without the newline) for a change, splicing stored JSON text in as it is. */
export function encodeChange(c: Change): string {
  const dataText = c instanceof StoredChange ? c.dataText : c.data === undefined ? null : JSON.stringify(c.data)
  const data = dataText === null ? '' : `,"data":${dataText}`
  return `{"seq":${c.seq},"key":${JSON.stringify(c.key)},"op":"${c.op}"${data},"tx":${c.tx},"ts":${c.ts}}`
}

/** One NDJSON line for a state row (tombstones as `"deleted":true`). */
export function encodeRow(r: StateRow): string {
  const dataText = r instanceof StoredRow ? r.dataText : r.data === undefined ? null : JSON.stringify(r.data)
  const tail = dataText === null ? ',"deleted":true' : `,"data":${dataText}`
  return `{"key":${JSON.stringify(r.key)},"seq":${r.seq}${tail}}`
}
