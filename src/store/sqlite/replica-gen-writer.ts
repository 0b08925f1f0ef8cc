import { HashedRow } from '../../digest/hashed-row.js'
import { bucketOf, rowHashHex } from '../../digest/row-hash.js'
import type { Change, Seq, StateRow } from '../../protocol/types.js'
import { changeText, rowText } from '../replica-row.js'
import { changesAbove, VersionWriter, wins, type HeldVersion } from '../replica/version-writer.js'
import type { DigestDeltas, ReplicaDigest } from './replica-digest.js'
import { INSERT_BATCH, type Statements } from './replica-statements.js'

/** Keys whose versions held are read per statement by a live apply. */
const READ_BATCH = 5000

/**
 * Writes versions into one generation inside the caller's transaction by the rules of
 * VersionWriter, each version held read by a statement, and keeps the digest's changes in memory
 * to record them once per transaction, at `flush`.
 */
export class SqliteGenWriter extends VersionWriter<Buffer> {
  constructor(
    private readonly s: Statements,
    private readonly digest: ReplicaDigest,
    private readonly deltas: DigestDeltas,
    private readonly name: string,
    private readonly gen: number,
    tombstones: boolean,
  ) {
    super(tombstones)
    // Left over from a transaction that threw.
    deltas.reset()
  }

  protected held(key: string): HeldVersion<Buffer> | undefined {
    return this.s.rowVersion.get(this.name, this.gen, key) as HeldVersion<Buffer> | undefined
  }

  protected hash(key: string, seq: Seq, text: string): Buffer {
    return Buffer.from(rowHashHex(key, seq, text), 'hex')
  }

  protected sameHash(a: Buffer, b: Buffer): boolean {
    return a.equals(b)
  }

  protected store(key: string, seq: Seq, text: string | null, h: Buffer | null, bucket: number, cur: HeldVersion<Buffer> | undefined): void {
    if (text === null && !this.tombstones) {
      if (cur !== undefined) this.s.deleteRow.run(this.name, this.gen, key)
    } else {
      this.s.upsertRow.run(this.name, this.gen, key, seq, text, h, bucket)
    }
  }

  protected digestAdd(bucket: number, h: Buffer): void {
    this.deltas.add(bucket, h, 0)
  }

  protected digestRemove(bucket: number, h: Buffer): void {
    this.deltas.remove(bucket, h, 0)
  }

  /**
   * For snapshot rows, mostly keys the generation does not hold yet: INSERT_BATCH rows per plain
   * INSERT (no conflict clause, nothing returned: a chunk of a snapshot is in key order and after the
   * last one, so its rows are new). A batch that does meet a key already there (a resumed chunk, a
   * key twice) fails whole — SQLite undoes only that statement — and goes again row by row, each
   * row already held through `write`.
   */
  insertAll(rows: StateRow[]): void {
    // The rows' hashes side by side in one buffer: a view per row, no allocation per row.
    const hashes = Buffer.allocUnsafe(rows.length * 16)
    const texts: Array<string | null> = new Array<string | null>(rows.length)
    const held: Array<Buffer | null> = new Array<Buffer | null>(rows.length)
    const buckets = new Int32Array(rows.length)
    const params: unknown[] = []
    const fixed = { name: this.name, gen: this.gen }
    for (let i = 0; i < rows.length; i += INSERT_BATCH) {
      const n = Math.min(INSERT_BATCH, rows.length - i)
      params.length = 0
      for (let j = i; j < i + n; j++) {
        const r = rows[j] as StateRow
        const text = rowText(r)
        let h: Buffer | null = null
        let bucket: number
        if (r instanceof HashedRow) {
          // Hashed by the snapshot prefetcher over this very text (hashed-row.ts).
          h = r.hash
          bucket = r.bucket
        } else {
          if (text !== null) {
            hashes.write(rowHashHex(r.key, r.seq, text), j * 16, 16, 'hex')
            h = hashes.subarray(j * 16, j * 16 + 16)
          }
          bucket = bucketOf(r.key)
        }
        texts[j] = text
        held[j] = h
        buckets[j] = bucket
        params.push(r.key, r.seq, text, h, bucket)
      }
      if (n === INSERT_BATCH && this.tryInsertBatch(fixed, params)) {
        for (let j = i; j < i + n; j++) if (held[j] !== null) this.account(buckets[j] as number, null, held[j] as Buffer)
        continue
      }
      for (let j = i; j < i + n; j++) {
        const r = rows[j] as StateRow
        const h = held[j] as Buffer | null
        const bucket = buckets[j] as number
        if (this.s.insertRow.get(this.name, this.gen, r.key, r.seq, texts[j], h, bucket) !== undefined) {
          if (h !== null) this.account(bucket, null, h)
        } else {
          this.write(r.key, r.seq, texts[j] as string | null, h, bucket)
        }
      }
    }
  }

  /** One batch as new rows; false (nothing written) when a key of it is already there. */
  private tryInsertBatch(fixed: { name: string; gen: number }, params: unknown[]): boolean {
    try {
      this.s.insertFresh.run(fixed, params)
      return true
    } catch (error) {
      if ((error as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false
      throw error
    }
  }

  /**
   * What `write` of every change above `above`, in order, comes to — for a live apply without a
   * hook, where nothing looks at the versions in between: only each key's newest version reaches
   * the rows, and the digest moves from the version held to it (the versions in between would be
   * added and taken away again, which cancels out exactly in a sum with a count). So the versions
   * held are read in one statement for up to READ_BATCH keys and the newer ones written
   * INSERT_BATCH rows per statement, instead of two statements per change.
   */
  writeNewest(changes: readonly Change[], above: Seq, upTo: Seq): void {
    const newest = new Map<string, Change>()
    for (const c of changesAbove(changes, above, upTo)) {
      changeText(c) // refuses an unknown op or an upsert without data, whichever version wins
      const prev = newest.get(c.key)
      if (prev === undefined || prev.seq < c.seq) newest.set(c.key, c)
    }
    const held = new Map<string, HeldVersion<Buffer>>()
    const keys = [...newest.keys()]
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const rows = this.s.rowVersions.all(this.name, this.gen, JSON.stringify(keys.slice(i, i + READ_BATCH))) as Array<{ key: string; seq: number; hash: Buffer | null }>
      for (const r of rows) held.set(r.key, r)
    }
    const params: unknown[] = []
    for (const [key, c] of newest) {
      const cur = held.get(key)
      if (!wins(cur, c.seq)) continue
      const text = changeText(c)
      const h = this.hashOf(key, c.seq, text)
      const bucket = bucketOf(key)
      if (text === null && !this.tombstones) {
        if (cur !== undefined) this.s.deleteRow.run(this.name, this.gen, key)
      } else {
        params.push(this.name, this.gen, key, c.seq, text, h, bucket)
        if (params.length === INSERT_BATCH * 7) {
          this.s.upsertRows.run(params)
          params.length = 0
        }
      }
      const old = cur?.hash ?? null
      if (old !== null || h !== null) this.account(bucket, old, h)
    }
    for (let j = 0; j < params.length; j += 7) this.s.upsertNewest.run(params.slice(j, j + 7))
  }

  flush(): void {
    this.digest.append(this.name, this.gen, this.deltas)
  }
}
