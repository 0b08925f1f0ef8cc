import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The repository's root: the CLI runs from there, as `node --import tsx src/cli/main.ts`. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CLI = ['--import', 'tsx', 'src/cli/main.ts']

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  /** Written to the CLI's stdin, which is then closed (stdin is empty otherwise). */
  input?: string
  env?: NodeJS.ProcessEnv
  /** Run as this user (to test permissions when the tests run as root). */
  uid?: number
  gid?: number
}

/** Spawns the real CLI and collects its output. */
export function tidemark(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const child = spawnTidemark(args, options)
  child.stdin?.end(options.input ?? '')
  return collect(child)
}

export function spawnTidemark(args: string[], options: RunOptions = {}): ChildProcess {
  return spawn(process.execPath, [...CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
  })
}

export function collect(child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** Runs several CLI invocations two at a time (the machine has two cores). */
export async function tidemarkAll(runs: Array<[string[], RunOptions?]>): Promise<CliResult[]> {
  const results = new Array<CliResult>(runs.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < runs.length) {
      const i = next++
      const [args, options] = runs[i] as [string[], RunOptions?]
      results[i] = await tidemark(args, options)
    }
  }
  await Promise.all([worker(), worker()])
  return results
}

/** The run succeeded; returns its stdout lines. */
export function ok(result: CliResult): string[] {
  assert.equal(result.code, 0, `exit ${result.code}, stderr: ${result.stderr}`)
  return result.stdout.split('\n').filter((l) => l !== '')
}

/** The run failed with `code` and exactly one line `tidemark: …` matching `message` on stderr, no stack trace. */
export function failsWith(result: CliResult, code: number, message: RegExp): void {
  assert.equal(result.code, code, `expected exit ${code}, got ${result.code}; stderr: ${result.stderr}`)
  assert.match(result.stderr, /^tidemark: [^\n]*\n$/, `not one line: ${JSON.stringify(result.stderr)}`)
  assert.match(result.stderr, message)
  assert.doesNotMatch(result.stderr, /\n\s+at /)
}

/** Starts `tidemark serve` and resolves with the URL it prints once listening. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string; done: Promise<CliResult> }> {
  const child = spawnTidemark(['serve', ...args], { env })
  child.stdin?.end()
  const done = collect(child)
  const url = await new Promise<string>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${seen}`)), 15_000)
    child.stderr?.on('data', (d: Buffer | string) => {
      seen += String(d)
      const m = /^tidemark serving .* at (https?:\/\/\S+)$/m.exec(seen)
      if (m) {
        clearTimeout(timer)
        resolve(m[1] as string)
      }
    })
    void done.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)))
  })
  return { child, url, done }
}
