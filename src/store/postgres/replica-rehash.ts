import type pg from 'pg'
import { bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
import { RehashCheck } from '../replica/rehash.js'
import type { RehashReport } from '../replica-store.js'

const W = 'tidemark.replica_rows'
const D = 'tidemark.replica_digest'

/**
 * ReplicaStore.rehash of generation `gen` inside the caller's transaction (the rules: RehashCheck):
 * rows read a page at a time, the stale ones rewritten per page, the digest replaced when wrong.
 */
export async function rehashGeneration(client: pg.ClientBase, name: string, gen: number, keys: number): Promise<RehashReport> {
  const check = new RehashCheck()
  let after = ''
  for (;;) {
    const { rows: page } = await client.query<{ key: string; seq: number; data: string; hash: Buffer | null; bucket: number | null }>(
      `SELECT key, seq, data, hash, bucket FROM ${W} WHERE name = $1 AND gen = $2 AND key > $3 AND data IS NOT NULL ORDER BY key LIMIT 1000`,
      [name, gen, after],
    )
    const stale: Array<{ key: string; hash: Buffer; bucket: number }> = []
    for (const row of page) {
      const right = check.row({ ...row, hash: row.hash === null ? null : bufferToHash(row.hash) })
      if (right !== null) stale.push({ key: row.key, hash: hashToBuffer(right.hash), bucket: right.bucket })
    }
    if (stale.length > 0) {
      await client.query(
        `UPDATE ${W} w SET hash = u.hash, bucket = u.bucket FROM unnest($3::text[], $4::bytea[], $5::int[]) AS u(key, hash, bucket)
         WHERE w.name = $1 AND w.gen = $2 AND w.key = u.key`,
        [name, gen, stale.map((x) => x.key), stale.map((x) => x.hash), stale.map((x) => x.bucket)],
      )
    }
    const last = page[page.length - 1]
    if (last === undefined) break
    after = last.key
  }
  const { rows: stored } = await client.query<{ bucket: number; count: number; sum: Buffer }>(`SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2`, [name, gen])
  const { leaves, wrongBuckets } = check.compare(stored.map((l) => ({ bucket: l.bucket, count: l.count, sum: bufferToHash(l.sum) })))
  if (wrongBuckets > 0) {
    await client.query(`DELETE FROM ${D} WHERE name = $1 AND gen = $2`, [name, gen])
    await client.query(`INSERT INTO ${D} (name, gen, bucket, count, sum) SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])`, [
      name,
      gen,
      leaves.map((l) => l.bucket),
      leaves.map((l) => l.count),
      leaves.map((l) => hashToBuffer(l.sum)),
    ])
  }
  if (keys !== check.rows) await client.query(`UPDATE tidemark.replica_replicas SET keys = $1 WHERE name = $2`, [check.rows, name])
  return check.report(wrongBuckets)
}
