import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { ERROR_CODES, HTTP_STATUS } from '../../src/errors.js'
import { LIMITS } from '../../src/protocol/limits.js'
import { BODY_LIMIT, EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE, PROTOCOL_HEADER } from '../../src/server/http-protocol.js'

// docs/protocol.md is the protocol's reference: it must list exactly the codes the code raises,
// with the statuses the server sends, and the bounds the server enforces.

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8')

/** The text of a `## title` section, up to the next `## `. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`)
  assert.ok(start >= 0, `docs/protocol.md has a "## ${title}" section`)
  const end = doc.indexOf('\n## ', start + 1)
  return doc.slice(start, end < 0 ? undefined : end)
}

describe('docs/protocol.md', () => {
  it('lists every error code with its HTTP status, and no other code', () => {
    const rows = new Map<string, number>()
    for (const match of section('Errors').matchAll(/^\| `([a-z-]+)` \| (\d{3}) \|/gm)) {
      assert.ok(!rows.has(match[1] as string), `${match[1]} is listed once`)
      rows.set(match[1] as string, Number(match[2]))
    }
    for (const code of ERROR_CODES) {
      assert.ok(rows.has(code), `the error table lists "${code}"`)
      assert.equal(rows.get(code), HTTP_STATUS[code], `the error table gives "${code}" status ${HTTP_STATUS[code]}`)
    }
    assert.deepEqual([...rows.keys()].sort(), [...ERROR_CODES].sort(), 'the error table lists no code that src/errors.ts lacks')
  })

  it('states the bounds the server enforces', () => {
    const limits = section('Limits')
    const numbers = [
      LIMITS.keyBytes,
      LIMITS.dataBytes,
      LIMITS.lineBytes,
      LIMITS.changesDefault,
      LIMITS.changesMax,
      LIMITS.snapshotDefault,
      LIMITS.snapshotMax,
      LIMITS.waitMaxMs,
      LIMITS.rowsMax,
      LIMITS.digestNodesGet,
      LIMITS.digestNodesMax,
      LIMITS.keysBucketsMax,
      LIMITS.bucketsPerRead,
    ]
    for (const n of numbers) assert.match(limits, new RegExp(`\\b${n}\\b`), `the limits table states ${n}`)
    assert.ok(limits.includes(LIMITS.feedName.source), 'the limits table states the feed name pattern')
    assert.equal(BODY_LIMIT, 16 * 1024 * 1024)
    assert.match(limits, /request body \| 16 MiB/)
    const changes = section('Endpoints')
    assert.match(changes, /\| `limit` \| `1000` \| `1` … `100000` \|/)
    assert.match(changes, /\| `wait` \| `0` \| `0` … `60000` \(ms\) \|/)
    assert.match(changes, /\| `limit` \| `1000` \| `1` … `10000` \|/)
  })

  it('names the headers and media type the server sends', () => {
    for (const name of [PROTOCOL_HEADER, EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE]) assert.ok(doc.includes(`\`${name}`), name)
  })
})
