import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'

/** One JSON log line of the child (pino), or a plain stderr line as `{ msg }`. */
export interface ChildLogLine {
  msg?: string
  component?: string
  from?: string
  to?: string
  [field: string]: unknown
}

export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
}

/**
 * `tidemark replicate …` as a real child process: its stderr (JSON logs) is written to a log file
 * and parsed, so that the demo can wait for what the replicator says (a phase change, a takeover).
 */
export class ChildReplicator {
  readonly lines: ChildLogLine[] = []
  readonly exited: Promise<ChildExit>
  private readonly child: ChildProcess
  private readonly listeners = new Set<(line: ChildLogLine) => void>()

  constructor(command: readonly string[], args: readonly string[], log: WriteStream) {
    const [exe, ...pre] = command as [string, ...string[]]
    this.child = spawn(exe, [...pre, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let partial = ''
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      log.write(chunk)
      const parts = (partial + chunk).split('\n')
      partial = parts.pop() ?? ''
      for (const text of parts) if (text.trim() !== '') this.take(parse(text))
    })
    this.exited = new Promise<ChildExit>((resolve, reject) => {
      this.child.once('error', reject)
      this.child.once('close', (code, signal) => resolve({ code, signal }))
    })
    // Reported through waitFor / the demo's own checks; never an unhandled rejection.
    this.exited.catch(() => {})
  }

  static logFile(path: string): WriteStream {
    return createWriteStream(path, { flags: 'a' })
  }

  get pid(): number {
    return this.child.pid ?? 0
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Resolves with the first line (already seen or to come) that matches; rejects if the child exits or time runs out. */
  waitFor(test: (line: ChildLogLine) => boolean, what: string, timeoutMs: number, signal?: AbortSignal): Promise<ChildLogLine> {
    const seen = this.lines.find(test)
    if (seen) return Promise.resolve(seen)
    return new Promise<ChildLogLine>((resolve, reject) => {
      const done = (fn: () => void): void => {
        clearTimeout(timer)
        this.listeners.delete(listener)
        signal?.removeEventListener('abort', onAbort)
        fn()
      }
      const listener = (line: ChildLogLine): void => {
        if (test(line)) done(() => resolve(line))
      }
      const onAbort = (): void => done(() => reject(signal?.reason))
      const timer = setTimeout(() => done(() => reject(new Error(`replica B: no sign of ${what} after ${timeoutMs / 1000} s`))), timeoutMs)
      this.listeners.add(listener)
      signal?.addEventListener('abort', onAbort, { once: true })
      void this.exited.then((exit) =>
        done(() => reject(new Error(`replica B exited (${exit.signal ?? `code ${exit.code}`}) before ${what}; its last words: ${this.lastWords()}`))),
      )
    })
  }

  /** Sends `signal` and resolves once the process is gone. */
  async kill(signal: NodeJS.Signals): Promise<ChildExit> {
    if (this.running) this.child.kill(signal)
    return this.exited
  }

  private take(line: ChildLogLine): void {
    this.lines.push(line)
    for (const listener of [...this.listeners]) listener(line)
  }

  private lastWords(): string {
    const last = this.lines.at(-1)
    return last?.msg ?? '(nothing)'
  }
}

function parse(text: string): ChildLogLine {
  if (text.startsWith('{')) {
    try {
      return JSON.parse(text) as ChildLogLine
    } catch {
      // Not JSON after all: keep it as text.
    }
  }
  return { msg: text }
}
