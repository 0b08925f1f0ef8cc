/**
 * Suite `export`: `tidemark export` and `tidemark import` of a feed of customers (rows of about 200
 * bytes as JSON), as a user runs them, against what every SQLite user already has — `sqlite3
 * .dump` of a table holding the same rows piped through gzip, and that dump loaded back — and
 * whether their memory stays flat as the feed grows. docs/bench.md explains each figure.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { atMost, TempDirs, timeMs } from '../harness.js'
import { baselineTable, dump, dumpGzip, haveTools, restore, runCli, type CliRun } from '../export/export-runs.js'
import { fillKeys, Owner } from '../replica/feeds.js'
import type { Suite } from '../suite.js'

const FULL = { rows: 1_000_000, smallRows: 100_000 }
const QUICK = { rows: 20_000, smallRows: 5000 }
const FEED = 'customers'

const n = (x: number): string => x.toLocaleString('en-US')
const mb = (bytes: number): number => bytes / 2 ** 20

/** A source file with `rows` customers in feed `customers`, its state indexed. */
async function fill(path: string, rows: number, seed: number): Promise<void> {
  const owner = new Owner(path)
  try {
    fillKeys(owner, FEED, rows, { seed })
  } finally {
    owner.close()
  }
  const store = SqliteSourceStore.open(path)
  try {
    await store.maintain()
  } finally {
    await store.close()
  }
}

export const exportSuite: Suite = {
  name: 'export',
  description: 'export to a file and import from it: rows/s, file size and peak RSS, against sqlite3 .dump | gzip',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    const dir = ctx.tmpDir()
    const temp = new TempDirs()
    try {
      const big = join(dir, 'big.db')
      const small = join(dir, 'small.db')
      const fillMs = await timeMs(async () => {
        await fill(small, sizes.smallRows, 31)
        await fill(big, sizes.rows, 32)
      })
      ctx.log(`${n(sizes.rows + sizes.smallRows)} rows written and indexed in ${(fillMs / 1000).toFixed(1)} s`)

      const run = async (source: string, rows: number, extra: string[] = []): Promise<{ exp: CliRun; imp: CliRun }> => {
        ctx.signal.throwIfAborted()
        const file = join(dir, `export-${rows}${extra.join('')}.tidemark`)
        const replica = join(dir, `replica-${rows}${extra.join('')}.db`)
        const exp = await runCli(temp, ['export', source, FEED, '-o', file, ...extra], file)
        ctx.log(`export of ${n(rows)} rows${extra.length ? ` (${extra.join(' ')})` : ''}: ${Math.round(rows / (exp.ms / 1000))} rows/s, ${mb(exp.bytes).toFixed(1)} MB, peak RSS ${mb(exp.peakRssBytes).toFixed(0)} MB`)
        ctx.signal.throwIfAborted()
        const imp = await runCli(temp, ['import', file, '--into', replica, '--source', 'http://127.0.0.1:9'])
        ctx.log(`import of ${n(rows)} rows: ${Math.round(rows / (imp.ms / 1000))} rows/s, peak RSS ${mb(imp.peakRssBytes).toFixed(0)} MB`)
        rmSync(replica, { force: true })
        for (const suffix of ['-wal', '-shm']) rmSync(`${replica}${suffix}`, { force: true })
        return { exp, imp }
      }
      const smallRun = await run(small, sizes.smallRows)
      const bigRun = await run(big, sizes.rows)
      const brotliRun = await run(big, sizes.rows, ['--compression', 'br'])

      let dumpGz: { ms: number; bytes: number } | undefined
      let dumpSql: { ms: number; bytes: number } | undefined
      let restored: { ms: number } | undefined
      if (haveTools()) {
        const table = join(dir, 'baseline.db')
        baselineTable(big, FEED, table)
        dumpGz = dumpGzip(table, join(dir, 'dump.sql.gz'))
        dumpSql = dump(table, join(dir, 'dump.sql'))
        restored = restore(join(dir, 'dump.sql'), join(dir, 'restored.db'))
        ctx.log(`sqlite3 .dump of ${n(sizes.rows)} rows: ${mb(dumpSql.bytes).toFixed(1)} MB in ${(dumpSql.ms / 1000).toFixed(1)} s; | gzip: ${mb(dumpGz.bytes).toFixed(1)} MB in ${(dumpGz.ms / 1000).toFixed(1)} s`)
      } else ctx.log('sqlite3 or gzip is not on PATH: the figures go without their baselines')

      const rate = (rows: number, ms: number): number => rows / (ms / 1000)
      ctx.report({
        figure: `export (${n(sizes.rows)} rows)`,
        value: rate(sizes.rows, bigRun.exp.ms),
        unit: 'rows/s',
        ...(dumpGz ? { baseline: { name: 'sqlite3 .dump | gzip', value: rate(sizes.rows, dumpGz.ms) }, ratio: 'baseline/value' as const } : {}),
        note: '`tidemark export <db> customers -o file` in a child process, start to exit: scratch copy through the bootstrap, then the file (gzip 6); baseline: a table of the same key, seq, data',
      })
      ctx.report({
        figure: `export file size (${n(sizes.rows)} rows)`,
        value: mb(bigRun.exp.bytes),
        unit: 'MB',
        ...(dumpGz ? { baseline: { name: 'sqlite3 .dump | gzip', value: mb(dumpGz.bytes) } } : {}),
        ...(dumpSql ? { note: `the uncompressed .dump is ${mb(dumpSql.bytes).toFixed(1)} MB` } : {}),
      })
      ctx.report({
        figure: `export file size, brotli 4 instead of gzip 6`,
        value: mb(brotliRun.exp.bytes),
        unit: 'MB',
        baseline: { name: 'gzip 6', value: mb(bigRun.exp.bytes) },
        note: `export with --compression br ran at ${n(Math.round(rate(sizes.rows, brotliRun.exp.ms)))} rows/s, its import at ${n(Math.round(rate(sizes.rows, brotliRun.imp.ms)))} rows/s`,
      })
      ctx.report({
        figure: `import (${n(sizes.rows)} rows)`,
        value: rate(sizes.rows, bigRun.imp.ms),
        unit: 'rows/s',
        ...(restored ? { baseline: { name: 'sqlite3 < dump.sql', value: rate(sizes.rows, restored.ms) }, ratio: 'baseline/value' as const } : {}),
        note: '`tidemark import file --into new.db` in a child process, start to exit: the whole file checked, then written with row hashes and digest, and swapped in',
      })
      ctx.report({
        figure: `export peak RSS, ${n(sizes.rows)} rows`,
        value: mb(bigRun.exp.peakRssBytes),
        unit: 'MB',
        baseline: { name: `${n(sizes.smallRows)} rows`, value: mb(smallRun.exp.peakRssBytes) },
        target: atMost(1.25, '≤ 1.25×'),
        note: 'peak RSS of the whole `tidemark export` process, node included',
      })
      ctx.report({
        figure: `import peak RSS, ${n(sizes.rows)} rows`,
        value: mb(bigRun.imp.peakRssBytes),
        unit: 'MB',
        baseline: { name: `${n(sizes.smallRows)} rows`, value: mb(smallRun.imp.peakRssBytes) },
        target: atMost(1.25, '≤ 1.25×'),
        note: 'peak RSS of the whole `tidemark import` process, node included',
      })
    } finally {
      temp.cleanup()
    }
  },
}
