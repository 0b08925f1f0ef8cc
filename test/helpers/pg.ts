import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import pg from 'pg'
import { startCluster, type Cluster } from './pg-cluster.js'

/**
 * The PostgreSQL the tests use: the one at TIDEMARK_TEST_PG_URL, else the local server on
 * 127.0.0.1:5432 when it answers, else a cluster started here from the installed binaries. None of
 * these is a test failure that says how to provide one — never a silent skip. Each test file makes
 * its own databases and drops them when it ends.
 */
const HOW =
  'the PostgreSQL tests need a server: set TIDEMARK_TEST_PG_URL=postgres://user:password@host:port/db ' +
  '(a user allowed to CREATE DATABASE), or run PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), ' +
  'or install PostgreSQL 15 (apt-get install postgresql) so that the tests can start their own'

let server: Promise<string> | undefined
/** The cluster this file started, if it had to: stopped after the last database is dropped. */
let cluster: Cluster | undefined

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

export function pgServer(): Promise<string> {
  server ??= (async () => {
    const given = process.env.TIDEMARK_TEST_PG_URL
    if (given) {
      if (await answers(given)) return given
      throw new Error(`TIDEMARK_TEST_PG_URL does not answer. ${HOW}`)
    }
    const local = 'postgres://postgres@127.0.0.1:5432/postgres'
    if (await answers(local)) return local
    try {
      cluster = await startCluster()
      return cluster.url
    } catch (error) {
      throw new Error(`no PostgreSQL reachable and none could be started (${(error as Error).message}). ${HOW}`)
    }
  })()
  return server
}

/** The URL of `base` with another database name. */
export function withDatabase(base: string, name: string): string {
  const u = new URL(base)
  u.pathname = `/${name}`
  return u.toString()
}

/** Databases made by this test file, dropped once all its tests (and their own cleanup) are done. */
const made: Array<{ base: string; name: string }> = []
after(async () => {
  for (const { base, name } of made.splice(0)) {
    const c = new pg.Client({ connectionString: base })
    await c.connect()
    try {
      // Not WITH (FORCE): terminating a connection the code under test still holds makes its
      // client emit 'error' outside any await, which crashes the test file (seen once after the
      // commit-order test). Wait for such connections to close instead; if they never do, leave
      // the database (uniquely named) and say so: a connection leaked by a store is worth a look.
      let dropped = false
      for (let i = 0; i < 50 && !dropped; i++) {
        try {
          await c.query(`DROP DATABASE IF EXISTS ${name}`)
          dropped = true
        } catch (error) {
          if ((error as { code?: string }).code !== '55006') throw error // object_in_use
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
      if (!dropped) process.stderr.write(`pg test helper: database ${name} still has connections after 5 s; left in place\n`)
    } finally {
      await c.end()
    }
  }
  cluster?.stop()
})

/** A fresh database on the test server, dropped when the test file ends. */
export async function pgDatabase(server?: string): Promise<string> {
  const base = server ?? (await pgServer())
  const name = `tidemark_test_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: base })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  made.push({ base, name })
  return withDatabase(base, name)
}
