/**
 * The export suite's measurements: `tidemark export` and `tidemark import` run as a user runs them
 * (the real CLI in a child process, so that its peak RSS is its own), and the baselines every
 * SQLite user already has: `sqlite3 .dump` of a table holding the same rows, piped through gzip,
 * and that dump loaded back with `sqlite3`.
 */
import BetterSqlite3 from 'better-sqlite3'
import { spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { nowMs, runNodeChild, type TempDirs } from '../harness.js'

export interface CliRun {
  ms: number
  peakRssBytes: number
  /** Size of the file written (export), in bytes. */
  bytes: number
}

function cliScript(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  return fileURLToPath(new URL(`../../src/cli/main${ext}`, import.meta.url))
}

/** Runs `tidemark <args>` to its end; throws with its stderr when it fails. */
export async function runCli(temp: TempDirs, args: string[], output?: string): Promise<CliRun> {
  const run = await runNodeChild(temp, { args: [cliScript(), ...args] })
  if (run.code !== 0) throw new Error(`tidemark ${args[0]} exited with ${run.code ?? run.signal}: ${run.stderr.trim()}`)
  return { ms: run.ms, peakRssBytes: run.peakRssBytes, bytes: output === undefined ? 0 : statSync(output).size }
}

/** Whether the baseline's tools are on PATH (the suite reports its figures without baselines otherwise). */
export function haveTools(): boolean {
  return ['sqlite3', 'gzip'].every((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0)
}

/** Copies `feed`'s live rows (key, seq, data: what an export holds) into table `state` of a new file. */
export function baselineTable(sourcePath: string, feed: string, to: string): void {
  const db = new BetterSqlite3(to)
  try {
    db.exec('CREATE TABLE state (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL) WITHOUT ROWID')
    db.prepare('ATTACH DATABASE ? AS src').run(sourcePath)
    db.prepare('INSERT INTO state SELECT key, seq, data FROM src.tidemark_state WHERE feed = ? AND data IS NOT NULL ORDER BY key').run(feed)
    db.exec('DETACH DATABASE src')
  } finally {
    db.close()
  }
}

export interface ShellRun {
  ms: number
  bytes: number
}

function sh(script: string, output: string): ShellRun {
  const started = nowMs()
  const r = spawnSync('sh', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  const ms = nowMs() - started
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`)
  return { ms, bytes: statSync(output).size }
}

const q = (path: string): string => `'${path.replaceAll("'", `'\\''`)}'`

/** `sqlite3 db .dump state > sql`. */
export function dump(db: string, sql: string): ShellRun {
  return sh(`sqlite3 ${q(db)} '.dump state' > ${q(sql)}`, sql)
}

/** `sqlite3 db .dump state | gzip > gz` (gzip's default level, 6). */
export function dumpGzip(db: string, gz: string): ShellRun {
  return sh(`sqlite3 ${q(db)} '.dump state' | gzip > ${q(gz)}`, gz)
}

/** `sqlite3 new.db < sql`: the dump loaded back. */
export function restore(sql: string, db: string): ShellRun {
  return sh(`sqlite3 ${q(db)} < ${q(sql)}`, db)
}
