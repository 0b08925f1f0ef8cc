import pg from 'pg'

/**
 * What `npm run bench` (suite `postgres`, src/bench/suites/postgres.ts) does to a PostgreSQL
 * database with plain SQL — the owner's load, logical replication set-up, counts — kept here so that
 * nothing outside src/store/postgres imports `pg`.
 */

export async function execSql(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}

export async function queryNumber(url: string, sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ n: string | number | null }>(sql)
    return Number(rows[0]?.n ?? 0)
  } finally {
    await client.end()
  }
}

/** One connection kept open for repeated counts (polling with a connection each time forks a backend per poll). */
export async function numberQueries(url: string): Promise<{ number(sql: string): Promise<number>; close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  return {
    async number(sql) {
      const { rows } = await client.query<{ n: string | number | null }>(sql)
      return Number(rows[0]?.n ?? 0)
    },
    close: () => client.end(),
  }
}

export interface OwnerLoad {
  /** Committed transactions per second, all connections together. */
  txPerSec: number
  rowsPerSec: number
}

/**
 * `connections` clients each committing transactions of `txSize` upserts into `table(id, name, n)`
 * for `ms`, as an owner service would (one statement per row): the same load with and without a
 * capture trigger on the table tells what capture costs.
 */
export async function ownerLoad(url: string, table: string, options: { txSize: number; connections: number; ms: number; keys: number }): Promise<OwnerLoad> {
  const pool = new pg.Pool({ connectionString: url, max: options.connections })
  pool.on('error', () => {})
  let txs = 0
  const end = Date.now() + options.ms
  const started = Date.now()
  try {
    await Promise.all(
      Array.from({ length: options.connections }, async (_, w) => {
        const client = await pool.connect()
        let i = 0
        try {
          while (Date.now() < end) {
            await client.query('BEGIN')
            for (let r = 0; r < options.txSize; r++) {
              const id = (w * 7919 + i++ * 31) % options.keys
              await client.query(
                `INSERT INTO ${table} (id, name, n) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET name = excluded.name, n = excluded.n`,
                [id, `name ${i}`, i],
              )
            }
            await client.query('COMMIT')
            txs++
          }
        } finally {
          client.release()
        }
      }),
    )
  } finally {
    await pool.end()
  }
  const seconds = (Date.now() - started) / 1000
  return { txPerSec: txs / seconds, rowsPerSec: (txs * options.txSize) / seconds }
}

/** Writes `txs` transactions of `txSize` upserts as fast as one connection can (the streaming load). */
export async function writeBurst(url: string, table: string, options: { txs: number; txSize: number; keys: number }): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (let t = 0; t < options.txs; t++) {
      const first = (t * options.txSize) % options.keys
      await client.query(
        `INSERT INTO ${table} (id, name, n) SELECT (g % $3), 'burst ' || g, g FROM generate_series($1::int, $2::int) g
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, n = excluded.n`,
        [first, first + options.txSize - 1, options.keys],
      )
    }
  } finally {
    await client.end()
  }
}

/** One connection kept open for the bench's reads of statistics and catalogs (rows as objects). */
export async function rowQueries(
  url: string,
  applicationName = 'tidemark-bench',
): Promise<{ rows<T>(sql: string, params?: unknown[]): Promise<T[]>; close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName })
  await client.connect()
  return {
    async rows<T>(sql: string, params: unknown[] = []) {
      return (await client.query(sql, params)).rows as T[]
    },
    close: () => client.end(),
  }
}
