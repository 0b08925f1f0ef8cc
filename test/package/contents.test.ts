import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { packedProject, ROOT } from '../helpers/packed.js'

describe('the published package', () => {
  it('holds the library, its CLI, docs and licence — not the bench, the demo, source maps or sources', () => {
    const { tarball } = packedProject()
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' })
      .split('\n')
      .filter((f) => f !== '' && !f.endsWith('/'))
      .map((f) => f.replace(/^package\//, ''))
    for (const needed of ['package.json', 'README.md', 'LICENSE', 'bin/tidemark.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'docs/protocol.md']) {
      assert.ok(files.includes(needed), `${needed} is missing from the package`)
    }
    const stray = files.filter((f) => /^(dist\/(bench|demo)\/|src\/|bench\/|demo\/|test\/)/.test(f) || f.endsWith('.map'))
    assert.deepEqual(stray, [], 'the package ships what users do not run')
  })

  it('promises no build step the package does not have', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    const bin = readFileSync(join(ROOT, 'bin/tidemark.js'), 'utf8')
    for (const script of ['prepare', 'postinstall']) {
      if (bin.includes(`${script} script`)) assert.ok(pkg.scripts[script] !== undefined, `bin/tidemark.js mentions a ${script} script that does not exist`)
    }
    assert.match(bin, /npm run build/)
    assert.ok(pkg.scripts.build !== undefined)
  })
})
