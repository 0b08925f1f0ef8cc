import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { packedProject, ROOT } from '../helpers/packed.js'

/** The README's TypeScript samples that import from 'tidemark', in order. */
function readmeSamples(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  return [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] as string).filter((code) => /from 'tidemark'/.test(code))
}

// An owner's most ordinary code: a value typed by an interface (no index signature), put as it is;
// and a projection that narrows a change on its op.
const ADOPTER = `
import Database from 'better-sqlite3'
import { ApplyFailedError, SchemaTooNewError, SqliteSource, isTidemarkError, type Change } from 'tidemark'

interface Customer {
  id: number
  name: string
  email?: string
  tags: string[]
  address: { city: string; zip: string | null }
}

const db = new Database(':memory:')
const customers = new SqliteSource(db).feed('customers')
const ada: Customer = { id: 42, name: 'Ada', tags: ['vip'], address: { city: 'London', zip: null } }
customers.put(String(ada.id), ada)

export function nameOf(change: Change): string | null {
  if (change.op === 'upsert') {
    const data = change.data // Json, not Json | undefined
    return typeof data === 'object' && data !== null && !Array.isArray(data) ? String(data.name) : null
  }
  const none: undefined = change.data
  return none ?? null
}

export function explain(error: unknown): string {
  if (error instanceof ApplyFailedError) return \`hook failed at \${error.seq}\`
  if (error instanceof SchemaTooNewError) return \`upgrade: schema \${error.version}\`
  return isTidemarkError(error) ? error.code : 'unknown'
}

// @ts-expect-error a function is not JSON
customers.put('f', { call: () => 1 })
`

describe("the README's samples, against the packed package", () => {
  it('compile under tsc --strict in a fresh project, with an interface-typed value', () => {
    const samples = readmeSamples()
    assert.equal(samples.length, 2, 'the README has an owner sample and a consumer sample')
    const { project } = packedProject()
    const files = [...samples.map((code, i) => [`sample-${i + 1}.ts`, code] as const), ['adopter.ts', ADOPTER] as const]
    for (const [name, code] of files) writeFileSync(join(project, name), code)
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', noEmit: true, types: ['node'], skipLibCheck: false },
        files: files.map(([name]) => name),
      }),
    )
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], { cwd: project, encoding: 'utf8', stdio: 'pipe' })
    } catch (error) {
      assert.fail(`tsc --strict failed:\n${(error as { stdout?: string }).stdout ?? String(error)}`)
    }
  })
})
