import type pg from 'pg'
import { applyDelta, type BucketDelta } from '../../digest/fold.js'
import { bucketOf, bufferToHash, hashToBuffer, rowHash } from '../../digest/row-hash.js'
import type { Seq, StateRow } from '../../protocol/types.js'
import { rowText } from '../replica-row.js'
import { VersionWriter, type HeldVersion } from '../replica/version-writer.js'

const W = 'tidemark.replica_rows'
const D = 'tidemark.replica_digest'

interface Version extends HeldVersion<bigint> {
  /** The data to write (a dirty version's); null for a version loaded and not rewritten. */
  data: string | null
  /** false: the key has no row (never had, or deleted without a tombstone). */
  present: boolean
  dirty: boolean
}

/**
 * Writes versions into one generation inside the caller's transaction by the rules of
 * VersionWriter: the keys' current versions are read in one query (`load`), decided in memory, and
 * written back with one upsert, one delete and one digest update (`flush`), so a batch costs a few
 * round trips whatever its size.
 */
export class PostgresGenWriter extends VersionWriter<bigint> {
  private readonly versions = new Map<string, Version>()
  readonly deltas = new Map<number, BucketDelta>()

  constructor(
    private readonly client: pg.ClientBase,
    private readonly name: string,
    readonly gen: number,
    /**
     * While bootstrapping: keep deletes as tombstones, and leave the digest alone — finishBootstrap
     * sums it from the rows' stored hashes once, instead of every chunk rewriting thousands of its
     * buckets.
     */
    private readonly bootstrapping: boolean,
  ) {
    super(bootstrapping)
  }

  async load(keys: string[]): Promise<void> {
    if (keys.length === 0) return
    // Not `data`: only the versions written here (dirty) are written back, with their own data.
    // One primary-key probe per key, whatever the statistics: a LATERAL subquery with LIMIT 1 is
    // not flattened into a join. With `key = ANY($3)` and no statistics yet on a freshly copied
    // generation (name and gen estimated at 27 rows of 1,000,000), the planner read the whole
    // generation through its bucket index and filtered it, per page: 8.7 s of the 15 s it took to
    // stream 200,000 changes into a 1,000,000-row replica.
    const { rows } = await this.client.query<{ key: string; seq: number; hash: Buffer | null }>(
      `SELECT w.key, w.seq, w.hash FROM unnest($3::text[]) AS k(key)
       CROSS JOIN LATERAL (SELECT key, seq, hash FROM ${W} WHERE name = $1 AND gen = $2 AND key = k.key LIMIT 1) AS w`,
      [this.name, this.gen, [...new Set(keys)]],
    )
    for (const r of rows) this.versions.set(r.key, { seq: r.seq, hash: r.hash ? bufferToHash(r.hash) : null, data: null, present: true, dirty: false })
  }

  protected held(key: string): HeldVersion<bigint> | undefined {
    const v = this.versions.get(key)
    return v?.present ? v : undefined
  }

  protected hash(key: string, seq: Seq, text: string): bigint {
    return rowHash(key, seq, text)
  }

  protected sameHash(a: bigint, b: bigint): boolean {
    return a === b
  }

  protected store(key: string, seq: Seq, text: string | null, h: bigint | null): void {
    this.versions.set(key, { seq, hash: h, data: text, present: text !== null || this.tombstones, dirty: true })
  }

  protected digestAdd(bucket: number, h: bigint): void {
    this.delta(bucket).count += 1
    this.delta(bucket).sum += h
  }

  protected digestRemove(bucket: number, h: bigint): void {
    this.delta(bucket).count -= 1
    this.delta(bucket).neg += h
  }

  private delta(bucket: number): BucketDelta {
    let d = this.deltas.get(bucket)
    if (!d) this.deltas.set(bucket, (d = { count: 0, sum: 0n, neg: 0n }))
    return d
  }

  /**
   * For snapshot rows, mostly keys the generation does not hold yet: one insert that skips the keys
   * already there, and only those (and a key twice in the chunk) are compared version by version.
   */
  async insertAll(rows: StateRow[]): Promise<void> {
    if (rows.length === 0) return
    const texts = rows.map(rowText)
    const hashes = rows.map((r, i) => this.hashOf(r.key, r.seq, texts[i] as string | null))
    const { rows: inserted } = await this.client.query<{ key: string }>(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket)
       SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::int[])
       ON CONFLICT (name, gen, key) DO NOTHING RETURNING key`,
      [
        this.name,
        this.gen,
        rows.map((r) => r.key),
        rows.map((r) => r.seq),
        texts,
        hashes.map((h) => (h === null ? null : hashToBuffer(h))),
        rows.map((r) => bucketOf(r.key)),
      ],
    )
    const fresh = new Set(inserted.map((r) => r.key))
    const rest: number[] = []
    rows.forEach((r, i) => {
      // The first of a key the insert took; any other goes through the version comparison.
      if (!fresh.delete(r.key)) return void rest.push(i)
      const h = hashes[i] ?? null
      this.versions.set(r.key, { seq: r.seq, hash: h, data: texts[i] ?? null, present: true, dirty: false })
      if (h !== null) this.account(bucketOf(r.key), null, h)
    })
    if (rest.length === 0) return
    await this.load(rest.map((i) => (rows[i] as StateRow).key).filter((k) => !this.versions.has(k)))
    for (const i of rest) {
      const r = rows[i] as StateRow
      this.write(r.key, r.seq, texts[i] ?? null, hashes[i] ?? null)
    }
  }

  async flush(): Promise<void> {
    const up: Array<[string, Version]> = []
    const gone: string[] = []
    for (const [key, v] of this.versions) {
      if (!v.dirty) continue
      if (v.present) up.push([key, v])
      else gone.push(key)
    }
    if (up.length > 0) {
      await this.client.query(
        `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket)
         SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bytea[], $7::int[])
         ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash, bucket = excluded.bucket`,
        [
          this.name,
          this.gen,
          up.map(([k]) => k),
          up.map(([, v]) => v.seq),
          up.map(([, v]) => v.data),
          up.map(([, v]) => (v.hash === null ? null : hashToBuffer(v.hash))),
          up.map(([k]) => bucketOf(k)),
        ],
      )
    }
    if (gone.length > 0) await this.client.query(`DELETE FROM ${W} WHERE name = $1 AND gen = $2 AND key = ANY($3::text[])`, [this.name, this.gen, gone])
    if (this.deltas.size === 0 || this.bootstrapping) return
    const buckets = [...this.deltas.keys()]
    const { rows } = await this.client.query<{ bucket: number; count: number; sum: Buffer }>(
      `SELECT d.bucket, d.count, d.sum FROM unnest($3::int[]) AS b(bucket)
       CROSS JOIN LATERAL (SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2 AND bucket = b.bucket LIMIT 1) AS d`,
      [this.name, this.gen, buckets],
    )
    const current = new Map(rows.map((r) => [r.bucket, { count: r.count, sum: bufferToHash(r.sum) }]))
    const next = buckets.map((b) => applyDelta(current.get(b), this.deltas.get(b) as BucketDelta))
    await this.client.query(
      `INSERT INTO ${D} (name, gen, bucket, count, sum) SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])
       ON CONFLICT (name, gen, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
      [this.name, this.gen, buckets, next.map((n) => n.count), next.map((n) => hashToBuffer(n.sum))],
    )
  }
}
