import assert from 'node:assert/strict'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pidAlive } from '../../src/store/replica-lease.js'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { collect, failsWith, ok, ROOT, tidemark } from '../cli/run-cli.js'
import { EXIT } from '../../src/errors.js'
import { tmpDir } from '../helpers/tmp.js'

/** The demo from source: demo/main.ts, an application beside the CLI. */
function spawnDemo(args: string[], compiled = false): ChildProcess {
  const entry = compiled ? ['build/demo/main.js'] : ['--import', 'tsx', 'demo/main.ts']
  return spawn(process.execPath, [...entry, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
}

function demo(args: string[], compiled = false): ReturnType<typeof collect> {
  const child = spawnDemo(args, compiled)
  child.stdin?.end()
  return collect(child)
}

describe('npm run demo', () => {
  it('runs the whole story and ends with both replicas equal to the owner (--quick, --dir, --keep)', async () => {
    const dir = join(tmpDir(), 'demo')
    // As `npm run demo` runs it: compiled into build/ (apart from the package) by scripts/setup.sh.
    execFileSync('sh', ['scripts/setup.sh'], { cwd: ROOT, stdio: 'pipe' })
    const result = await demo(['--quick', '--dir', dir, '--keep'], true)
    const lines = ok(result)
    const text = lines.join('\n')
    // Plain text for a person: no JSON log lines, no colour codes when stdout is not a terminal.
    assert.equal(result.stderr, '', result.stderr)
    assert.doesNotMatch(text, /\u001b\[/)
    assert.doesNotMatch(text, /^\s*\{/m)
    for (const heading of ['1. The owner', '2. Replica A, there from the start', '3. Replica B, joining late, in its own process', '4. All three running', '5. Are the replicas equal to the owner?', '6. Drift nobody announced', 'Timings', 'What next']) {
      assert.ok(lines.includes(heading), `no heading "${heading}" in:\n${text}`)
    }

    // The lost message, noticed and healed from the log.
    const lost = /⚡ lost the delivery of changes ([\d,]+)–([\d,]+)/.exec(text)
    assert.ok(lost, text)
    assert.match(text, /Replica A noticed: the next delivery did not follow its checkpoint\n\s+[\d,]+, so it pulled the missing changes from the log\./)
    assert.match(text, /✔ checkpoint now [\d,]+, past the lost [\d,]+: nothing missing\./)

    // Replica B killed and restarted: it resumed (mid-copy on any machine but a very fast one).
    assert.match(text, /⚡ killed it \(SIGKILL\)/)
    assert.match(text, /Restarted it \(pid \d+\): it took over the dead process's claim at once,/)
    assert.match(text, /✔ and resumed (after key "\d+", keeping the [\d,]+ it had|where it was \(the snapshot already copied\)): not from scratch\./)
    assert.match(text, /Replica B is live at seq [\d,]+/)

    // The verdict, at the same position, by digest and row by row.
    const verdicts = [...text.matchAll(/^\s+(digest|rows\s*|customer_names) (✔ equal|✘ differs)/gm)].map((m) => `${m[1]!.trim()} ${m[2]}`)
    assert.deepEqual(verdicts, ['digest ✔ equal', 'rows ✔ equal', 'customer_names ✔ equal', 'digest ✔ equal', 'rows ✔ equal'])
    const positions = [...text.matchAll(/^\s+Replica ([AB]) at seq ([\d,]+) \(owner: ([\d,]+)\)/gm)]
    assert.equal(positions.length, 2)
    for (const m of positions) assert.equal(m[2], m[3])
    assert.match(text, /\(stopped with SIGTERM at a transaction boundary: exit 0\)/)
    assert.match(text, /Replica A compared its digest with the owner's: intact, in 1 round trip and [\d,]+ bytes/)
    assert.match(text, /⚡ edited customer \S+ by hand in replica-a\.db/)
    assert.match(text, /✔ drifted: customer \S+; rewritten from the owner through the projection hook/)
    assert.match(text, /the whole demo\s+[\d.]+ (s|ms)/)

    // --keep: the files stay, and the "what next" commands work on them.
    assert.ok(existsSync(join(dir, 'owner.db')) && existsSync(join(dir, 'replica-a.db')) && existsSync(join(dir, 'replica-b.db')))
    assert.match(text, new RegExp(`tidemark status ${escape(join(dir, 'replica-b.db'))}`))
    const status = ok(await tidemark(['status', join(dir, 'replica-b.db')])).join('\n')
    assert.match(status, /phase\s+stopped \(no replicator running\)/)
    assert.match(status, /lag\s+none/)

    // A second run into the same folder refuses to mix its files with the first one's.
    failsWith(await demo(['--quick', '--dir', dir]), EXIT.usage, /already holds owner\.db.*from an earlier demo: remove them or choose another --dir/)
  })

  it('cleans up after itself when interrupted: no files, no replicator left running', async () => {
    const dir = join(tmpDir(), 'demo')
    const child = spawnDemo(['--quick', '--dir', dir])
    child.stdin?.end()
    const done = collect(child)
    let seen = ''
    const pid = await new Promise<number>((resolve, reject) => {
      child.stdout?.on('data', (d: Buffer | string) => {
        seen += String(d)
        const m = /Restarted it \(pid (\d+)\)/.exec(seen)
        if (m) resolve(Number(m[1]))
      })
      void done.then((r) => reject(new Error(`the demo ended before replica B restarted: ${r.stdout}${r.stderr}`)))
    })
    child.kill('SIGINT')
    const result = await done
    assert.equal(result.code, 130, result.stderr)
    assert.match(result.stderr, /^tidemark: demo interrupted by SIGINT; cleaned up\n$/)
    assert.equal(pidAlive(pid), false)
    assert.deepEqual(readdirSync(dir), [])
  })

  it('does not remove files it did not make', async () => {
    const dir = tmpDir()
    writeFileSync(join(dir, 'notes.txt'), 'mine')
    const child = spawnDemo(['--quick', '--dir', dir])
    child.stdin?.end()
    const done = collect(child)
    let seen = ''
    child.stdout?.on('data', (d: Buffer | string) => {
      seen += String(d)
      if (seen.includes('2. Replica A') && child.signalCode === null && !child.killed) child.kill('SIGTERM')
    })
    assert.equal((await done).code, 130)
    assert.deepEqual(readdirSync(dir), ['notes.txt'])
  })
})

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
