import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { ERROR_CODES, EXIT, EXIT_CODE } from '../../src/errors.js'

/** docs/cli.md's exit-code table: exit → its name and the error codes it lists. */
function documentedTable(): Map<number, { name: string; codes: string[] }> {
  const doc = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8')
  const rows = new Map<number, { name: string; codes: string[] }>()
  for (const match of doc.matchAll(/^\| (\d+) \| `(\w+)` \| [^|]+ \|([^|]*)\|$/gm)) {
    const exit = Number(match[1])
    assert.ok(!rows.has(exit), `exit ${exit} is listed once`)
    rows.set(exit, { name: match[2] as string, codes: [...(match[3] as string).matchAll(/`([a-z-]+)`/g)].map((m) => m[1] as string) })
  }
  return rows
}

describe('exit codes', () => {
  it('are one table: every status distinct, and docs/cli.md lists each with the error codes that end in it', () => {
    const values = Object.values(EXIT)
    assert.equal(new Set(values).size, values.length, 'no two meanings share an exit status')
    assert.ok(!(values as number[]).includes(1), 'exit 1 stays node\'s own')
    const rows = documentedTable()
    assert.deepEqual(
      [...rows].map(([exit, { name }]) => [name, exit]).sort(),
      Object.entries(EXIT).sort(),
      'docs/cli.md has a row for each EXIT entry, and no other',
    )
    for (const code of ERROR_CODES) {
      const listed = [...rows].filter(([, row]) => row.codes.includes(code)).map(([exit]) => exit)
      assert.deepEqual(listed, [EXIT_CODE[code]], `docs/cli.md lists "${code}" in the row of exit ${EXIT_CODE[code]} only`)
    }
  })

  it('keep usage errors apart from conflict, unknown feed and unauthorized', () => {
    const distinct = [EXIT.usage, EXIT_CODE.conflict, EXIT_CODE['unknown-feed'], EXIT_CODE.unauthorized, EXIT_CODE['not-a-feed-server']]
    assert.equal(new Set(distinct).size, distinct.length)
    assert.equal(EXIT_CODE['bad-request'], EXIT.usage)
  })
})
