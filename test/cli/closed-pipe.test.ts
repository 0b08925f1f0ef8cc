import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { CLI, ROOT } from './run-cli.js'

/** Runs the CLI with its stdout piped into a reader that leaves after the first chunk, like `| head -1`. */
function intoHead(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdout.once('data', () => child.stdout.destroy())
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stderr }))
  })
}

describe('a reader that goes away', () => {
  it('ends `tidemark --help | head` quietly with exit 0', async () => {
    const result = await intoHead(['--help'])
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stderr, /EPIPE|Unhandled/)
  })
})
