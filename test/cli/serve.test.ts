import assert from 'node:assert/strict'
import { createServer, type AddressInfo } from 'node:net'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { isLoopback } from '../../src/cli/commands/serve.js'
import { testCa } from '../helpers/tls.js'
import { tmpDir } from '../helpers/tmp.js'
import { failsWith, ok, startServe, tidemark } from './run-cli.js'
import { EXIT } from '../../src/errors.js'

const serve = startServe

describe('tidemark serve', () => {
  it('serves on the port it was given (0: any), asks for a token, stops on SIGTERM with exit 0', async () => {
    const db = join(tmpDir(), 'shop.db')
    ok(await tidemark(['write', db, 'customers', '1', '{"name":"Ada"}']))
    const { child, url, done } = await serve([db, '--port', '0', '--token', 'first', '--token', 'second'])
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.notEqual(url, 'http://127.0.0.1:0')

    const health = await fetch(`${url}/healthz`)
    assert.equal(health.status, 200)
    const anonymous = await fetch(`${url}/v1/feeds`)
    assert.equal(anonymous.status, 401)
    assert.equal(((await anonymous.json()) as { error: string }).error, 'unauthorized')
    const wrong = await fetch(`${url}/v1/feeds`, { headers: { authorization: 'Bearer third' } })
    assert.equal(wrong.status, 401)
    for (const token of ['first', 'second']) {
      const feeds = await fetch(`${url}/v1/feeds`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(feeds.status, 200)
      assert.deepEqual(((await feeds.json()) as Array<{ name: string; head: number }>).map((f) => [f.name, f.head]), [['customers', 1]])
    }

    child.kill('SIGTERM')
    const result = await done
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stderr, /tidemark: (?!serving)/)
    // The store was closed cleanly: the database is usable at once.
    assert.deepEqual(ok(await tidemark(['write', db, 'customers', '2', '{}'])), ['2'])
  })

  it('takes its tokens from TIDEMARK_TOKENS, stops on SIGINT, and fails like the other commands', async () => {
    const db = join(tmpDir(), 'shop.db')
    ok(await tidemark(['write', db, 'customers', '1', '{}']))
    const { child, url, done } = await serve([db, '--port', '0'], { TIDEMARK_TOKENS: ' a , b ' })
    assert.equal((await fetch(`${url}/v1/feeds`)).status, 401)
    assert.equal((await fetch(`${url}/v1/feeds`, { headers: { authorization: 'Bearer b' } })).status, 200)
    child.kill('SIGINT')
    assert.equal((await done).code, 0)

    failsWith(await tidemark(['serve', join(tmpDir(), 'missing.db'), '--port', '0']), 3, /no such database file/)
    // An empty or blank token (a variable that is not set) is an error, never "no authentication".
    failsWith(await tidemark(['serve', db, '--port', '0', '--token', '']), EXIT.usage, /--token number 1 of 1 is empty: an empty token would leave the feed server without authentication/)
    failsWith(await tidemark(['serve', db, '--port', '0', '--token', 'a', '--token', ' ']), EXIT.usage, /--token number 2 of 2 is empty/)
    failsWith(await tidemark(['serve', db, '--port', '0', '--token', 'a b']), EXIT.usage, /contains a space or a control character/)
    failsWith(await tidemark(['serve', db, '--port', '0'], { env: { TIDEMARK_TOKENS: ',,' } }), EXIT.usage, /TIDEMARK_TOKENS entry 1 of 3 is empty/)
    failsWith(await tidemark(['serve', db, '--port', '0'], { env: { TIDEMARK_TOKENS: 'a,,b' } }), EXIT.usage, /TIDEMARK_TOKENS entry 2 of 3 is empty/)
    failsWith(await tidemark(['serve', db, '--port', '0'], { env: { TIDEMARK_TOKENS: '' } }), EXIT.usage, /TIDEMARK_TOKENS entry 1 of 1 is empty/)
    failsWith(await tidemark(['serve', db, '--port', '0', '--limit', 'nope=1']), EXIT.usage, /--limit "nope=1": give name=value with a whole number, the name one of requestTimeoutMs, /)
    failsWith(await tidemark(['serve', db, '--port', '0', '--limit', 'exports=0']), EXIT.usage, /server limit exports must be a positive whole number, got 0/)
    failsWith(await tidemark(['serve', db, '--port', '70000']), EXIT.usage, /argument '70000' is invalid/)
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const { port } = taken.address() as AddressInfo
    try {
      failsWith(await tidemark(['serve', db, '--port', String(port)]), EXIT.usage, new RegExp(`127\\.0\\.0\\.1:${port} is already in use: choose another --port`))
    } finally {
      taken.close()
    }
  })

  it('refuses to serve an address other computers can reach without tokens, unless --insecure-no-auth', async () => {
    const db = join(tmpDir(), 'shop.db')
    ok(await tidemark(['write', db, 'customers', '1', '{}']))
    for (const host of ['0.0.0.0', '::']) {
      failsWith(
        await tidemark(['serve', db, '--host', host, '--port', '0']),
        EXIT.usage,
        new RegExp(`refusing to serve ${host.replace(/\./g, '\\.')} without tokens: anyone who can reach that address could read, export and verify every feed\\. Give --token`),
      )
    }
    // Blank tokens do not count as tokens (they are an error of their own).
    failsWith(await tidemark(['serve', db, '--host', '0.0.0.0', '--port', '0', '--token', '']), EXIT.usage, /is empty/)

    const open = await serve([db, '--host', '0.0.0.0', '--port', '0', '--insecure-no-auth'])
    const port = new URL(open.url).port
    assert.equal((await fetch(`http://127.0.0.1:${port}/v1/feeds`)).status, 200)
    open.child.kill('SIGTERM')
    const result = await open.done
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stderr, /--insecure-no-auth: anyone who can reach http:\/\/0\.0\.0\.0:\d+ can read every feed/)

    const guarded = await serve([db, '--host', '0.0.0.0', '--port', '0', '--token', 't'])
    assert.equal((await fetch(`http://127.0.0.1:${new URL(guarded.url).port}/v1/feeds`)).status, 401)
    guarded.child.kill('SIGTERM')
    assert.equal((await guarded.done).code, 0)
  })

  it('knows which addresses are loopback', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '[::1]', '::ffff:127.0.0.1']) assert.equal(isLoopback(host), true, host)
    for (const host of ['0.0.0.0', '::', '10.0.0.5', '128.0.0.1', 'example.com', '::ffff:10.0.0.1', '127.0.0.1.example.com']) assert.equal(isLoopback(host), false, host)
  })

  it('serves HTTPS with --tls-cert/--tls-key, reloads them on SIGHUP; clients trust a CA given with --ca', async () => {
    const first = testCa('first CA')
    const second = testCa('second CA')
    const dir = tmpDir()
    const db = join(dir, 'shop.db')
    ok(await tidemark(['write', db, 'customers', '1', '{"name":"Ada"}']))
    const cert = join(dir, 'server.pem')
    const key = join(dir, 'server.key')
    copyFileSync(first.certFile, cert)
    copyFileSync(first.keyFile, key)
    failsWith(await tidemark(['serve', db, '--port', '0', '--tls-cert', cert]), EXIT.usage, /give --tls-cert and --tls-key together/)
    failsWith(await tidemark(['serve', db, '--port', '0', '--tls-cert', cert, '--tls-key', second.keyFile]), EXIT.usage, /not usable together/)

    const { child, url, done } = await serve([db, '--port', '0', '--tls-cert', cert, '--tls-key', key])
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/)
    const out = join(dir, 'c.tidemark')
    ok(await tidemark(['export', url, 'customers', '-o', out, '--ca', first.caFile]))
    failsWith(await tidemark(['export', url, 'customers', '-o', out]), 3, /certificate/i)
    failsWith(await tidemark(['export', url, 'customers', '-o', out, '--ca', second.caFile]), 3, /certificate/i)
    failsWith(await tidemark(['export', url, 'customers', '-o', out, '--ca', join(dir, 'missing.pem')]), EXIT.usage, /cannot read the CA file/)
    failsWith(await tidemark(['export', url, 'customers', '-o', out, '--ca', db]), EXIT.usage, /holds no PEM certificate/)

    // New files, then SIGHUP: new connections get the new certificate.
    copyFileSync(second.certFile, cert)
    copyFileSync(second.keyFile, key)
    let stderr = ''
    child.stderr?.on('data', (d: Buffer | string) => (stderr += String(d)))
    child.kill('SIGHUP')
    for (let i = 0; i < 500 && !/reloaded the TLS certificate/.test(stderr); i++) await new Promise((r) => setTimeout(r, 20))
    assert.match(stderr, /reloaded the TLS certificate/)
    ok(await tidemark(['export', url, 'customers', '-o', out, '--ca', second.caFile], { env: {} }))
    ok(await tidemark(['export', url, 'customers', '-o', out], { env: { TIDEMARK_CA: second.caFile } }))
    child.kill('SIGTERM')
    assert.equal((await done).code, 0)
  })
})
