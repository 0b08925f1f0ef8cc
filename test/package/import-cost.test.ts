import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { packedProject } from '../helpers/packed.js'

// Records every package an import resolves to, through a module hook (by module list, not by time).
const HOOKS = `
let port
export function initialize(data) { port = data.port }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  port.postMessage(resolved.url)
  return resolved
}
`
const PROBE = `
import { register } from 'node:module'
import { MessageChannel } from 'node:worker_threads'
const { port1, port2 } = new MessageChannel()
const urls = []
port1.on('message', (url) => urls.push(url))
register('./hooks.mjs', import.meta.url, { data: { port: port2 }, transferList: [port2] })
const entry = process.argv[2]
const loaded = await import(entry)
await new Promise((r) => setTimeout(r, 200))
port1.close()
const packages = [...new Set(urls.map((u) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(u)?.[1]).filter((p) => p && p !== 'tidemark'))].sort()
console.log(JSON.stringify({ packages, exports: Object.keys(loaded).length }))
`

describe('what each entry loads', () => {
  it("tidemark/sqlite loads better-sqlite3, not fastify, undici, pg or a broker's client; the others load what they name", () => {
    const { project } = packedProject()
    writeFileSync(join(project, 'hooks.mjs'), HOOKS)
    writeFileSync(join(project, 'probe.mjs'), PROBE)
    const probe = (entry: string): { packages: string[]; exports: number } =>
      JSON.parse(execFileSync(process.execPath, ['probe.mjs', entry], { cwd: project, encoding: 'utf8' })) as { packages: string[]; exports: number }
    const heavy = ['fastify', 'undici', 'pg', 'pg-copy-streams', 'prom-client', 'amqplib', '@nats-io/transport-node', '@nats-io/jetstream']

    const sqlite = probe('tidemark/sqlite')
    assert.ok(sqlite.packages.includes('better-sqlite3'), `tidemark/sqlite: ${sqlite.packages.join(', ')}`)
    assert.deepEqual(sqlite.packages.filter((p) => heavy.includes(p)), [], `tidemark/sqlite loads ${sqlite.packages.join(', ')}`)
    assert.ok(sqlite.exports > 10)

    const postgres = probe('tidemark/postgres')
    assert.ok(postgres.packages.includes('pg'))
    assert.deepEqual(postgres.packages.filter((p) => ['fastify', 'undici', 'prom-client'].includes(p)), [], `tidemark/postgres loads ${postgres.packages.join(', ')}`)
    assert.ok(probe('tidemark/server').packages.includes('fastify'))
    assert.deepEqual(probe('tidemark/replica').packages.filter((p) => ['fastify', 'pg'].includes(p)), [])
    // The whole entry still offers everything (and is what it costs).
    const all = probe('tidemark')
    for (const p of ['fastify', 'pg', 'undici']) assert.ok(all.packages.includes(p), `the probe sees ${p} loaded by tidemark: ${all.packages.join(', ')}`)
    assert.ok(all.exports >= sqlite.exports + postgres.exports - 20)
  })
})
