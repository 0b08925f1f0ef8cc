import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { tmpDir } from '../helpers/tmp.js'
import { failsWith, ok, startServe, tidemark } from './run-cli.js'
import { EXIT } from '../../src/errors.js'

const SECRET = /^tmk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/

describe('tidemark token', () => {
  it('creates (the secret printed once), lists without secrets, rotates and revokes; serve then asks for them', async () => {
    const db = join(tmpDir(), 'shop.db')
    ok(await tidemark(['write', db, 'customers_billing', 'k', '{"a":1}']))
    ok(await tidemark(['write', db, 'other', 'k', '{"b":2}']))
    const created = await tidemark(['token', 'create', db, '--name', 'billing', '--feed', 'customers_billing', '--scope', 'read', '--expires', '30d'])
    const [secret] = ok(created)
    assert.match(secret!, SECRET)
    assert.match(created.stderr, /token "billing": read on feed customers_billing, expires \d{4}-.*shown this once/)
    failsWith(await tidemark(['token', 'create', db, '--name', 'billing', '--all-feeds', '--scope', 'read']), EXIT.usage, /a token named "billing" exists already/)
    failsWith(await tidemark(['token', 'create', db, '--name', 'x', '--scope', 'read']), EXIT.usage, /--feed <feed> \(repeatable\) or --all-feeds/)
    failsWith(await tidemark(['token', 'create', db, '--name', 'x', '--all-feeds', '--scope', 'root']), EXIT.usage, /unknown scope "root"/)

    const list = ok(await tidemark(['token', 'list', db]))
    assert.match(list[0]!, /^NAME\s+FEEDS\s+SCOPES\s+CREATED\s+EXPIRES\s+LAST-USED\s+STATE$/)
    assert.match(list[1]!, /^billing\s+customers_billing\s+read\s+\S+Z\s+\S+Z\s+-\s+live$/)
    const json = (await tidemark(['token', 'list', db, '--json'])).stdout
    assert.doesNotMatch(json, new RegExp(secret!.slice(-20)))
    assert.doesNotMatch(json, /hash/)

    const { child: server, url, done } = await startServe([db, '--port', '0'])
    try {
      const as = (token?: string) => (token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
      assert.equal((await fetch(`${url}/v1/feeds`)).status, 401, 'a store with tokens: every request needs one')
      const feeds = (await (await fetch(`${url}/v1/feeds`, as(secret))).json()) as Array<{ name: string }>
      assert.deepEqual(feeds.map((f) => f.name), ['customers_billing'])
      assert.equal((await fetch(`${url}/v1/feeds/other/snapshot`, as(secret))).status, 403)

      const rotated = await tidemark(['token', 'rotate', db, 'billing', '--grace', '0'])
      const [fresh] = ok(rotated)
      assert.match(fresh!, SECRET)
      assert.match(rotated.stderr, /the old secret is refused from now on/)
      assert.equal((await fetch(`${url}/v1/feeds/customers_billing`, as(fresh))).status, 200)
      await new Promise((resolve) => setTimeout(resolve, 1100))
      assert.equal((await fetch(`${url}/v1/feeds/customers_billing`, as(secret))).status, 401)

      assert.deepEqual(ok(await tidemark(['token', 'revoke', db, 'billing'])), ['token "billing" revoked'])
      await new Promise((resolve) => setTimeout(resolve, 1100))
      assert.equal((await fetch(`${url}/v1/feeds/customers_billing`, as(fresh))).status, 401)
      assert.match(ok(await tidemark(['token', 'list', db]))[1]!, /\S+Z\s+revoked$/, 'the use was recorded')
      failsWith(await tidemark(['token', 'revoke', db, 'billing']), EXIT.usage, /no token named "billing"/)
    } finally {
      server.kill('SIGTERM')
      await done
    }
  })
})
