/**
 * HttpFeedSource against scripted servers: everything a real feed server cannot be made to do —
 * cut a body, send garbage, break the listing's rules, answer as something else, never answer.
 * Each must end in the error a replica acts on: ProtocolError or `store-unavailable` (retry with
 * backoff), EpochChangedError / LogTruncatedError (re-bootstrap), or the server's own refusal.
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import {
  BadRequestError,
  EpochChangedError,
  LogTruncatedError,
  NotAFeedServerError,
  ProtocolError,
  TidemarkError,
  UnknownFeedError,
} from '../../src/errors.js'
import type { StoredChange, StoredRow } from '../../src/protocol/encoded.js'
import { LIMITS } from '../../src/protocol/limits.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { changeLine, fakeServer, httpSource, v1Changes, v1Error, v1Head } from './helpers.js'

/** A server that answers every request with `respond`, and a client to it. */
async function scripted(respond: (res: ServerResponse, url: string, body: string) => void, options = {}) {
  const server = await fakeServer((req, res, body) => respond(res, req.url ?? '', body))
  return { server, source: httpSource(server.url, options) }
}

function isCode(code: string, message?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TidemarkError, `a TidemarkError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (message) assert.match(e.message, message)
    return true
  }
}

const protocol = (message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ProtocolError, `a ProtocolError, got ${String(e)}`)
  assert.match(e.message, message)
  return true
}

describe('HttpFeedSource: what it sends', () => {
  it('asks with the query, the bearer token and the accept header; posts keys as JSON', async () => {
    const { server, source } = await scripted(
      (res, url) => {
        if (url.includes('/changes')) v1Changes(res, [], { head: 5, last: 5 })
        else if (url.includes('/snapshot')) {
          v1Head(res, 200, 'ndjson', 'e1')
          res.end(`${JSON.stringify({ end: true, epoch: 'e1', head: 5, last: 'k', done: true, rows: 0 })}\n`)
        } else if (url.endsWith('/rows')) {
          v1Head(res, 200, 'json')
          res.end('{"epoch":"e1","head":5,"rows":[]}')
        }
      },
      { token: 's3cret' },
    )
    await source.changes('orders', { after: 5, limit: 10, waitMs: 100, epoch: 'e1' })
    await source.changes('orders', { after: 5 })
    await source.snapshot('orders', { after: 'k', limit: 3, epoch: 'e1' })
    await source.rows('orders', ['a', 'b/c'])
    assert.deepEqual(
      server.requests.map((r) => [r.method, r.url, r.headers.authorization, r.headers.accept]),
      [
        ['GET', '/v1/feeds/orders/changes?after=5&limit=10&wait=100&epoch=e1', 'Bearer s3cret', 'application/x-ndjson'],
        ['GET', '/v1/feeds/orders/changes?after=5', 'Bearer s3cret', 'application/x-ndjson'],
        ['GET', '/v1/feeds/orders/snapshot?after=k&limit=3&epoch=e1', 'Bearer s3cret', 'application/x-ndjson'],
        ['POST', '/v1/feeds/orders/rows', 'Bearer s3cret', 'application/json'],
      ],
    )
    assert.equal(server.requests[3]?.headers['content-type'], 'application/json')
    assert.deepEqual(JSON.parse(server.requests[3]?.body ?? ''), { keys: ['a', 'b/c'] })
  })

  it('keeps a base path, and refuses URLs with credentials, a query or another scheme', async () => {
    const { server } = await scripted((res) => v1Changes(res, [], { head: 0, last: 0 }))
    const based = httpSource(`${server.url}/tidemark/`)
    assert.equal(based.description, `${server.url}/tidemark`)
    await based.changes('f', { after: 0 })
    assert.equal(server.requests[0]?.url, '/tidemark/v1/feeds/f/changes?after=0')

    assert.throws(() => new HttpFeedSource('http://user:pw@127.0.0.1:1'), (e) => e instanceof BadRequestError && !e.message.includes('pw'))
    assert.throws(() => new HttpFeedSource('http://127.0.0.1:1/?token=abc'), (e) => e instanceof BadRequestError && !e.message.includes('abc'))
    assert.throws(() => new HttpFeedSource('ftp://127.0.0.1'), BadRequestError)
    assert.throws(() => new HttpFeedSource('not a url'), BadRequestError)
  })
})

describe('HttpFeedSource: data text byte for byte', () => {
  const odd = [
    '{ "name" : "Ada" ,\t"tags" : [ "x" , "y" ] }',
    '{"s":"\\u00e9\\u2028\\ud83d\\ude00 \\"q\\" \\\\","n":1.50,"e":1E+2}',
    '{"fake":"\\",\\"tx\\":9,\\"ts\\":9}"}',
    '"é 日本 😀"',
    '[ ]',
  ]

  it('in changes, snapshot rows and rows by key — what the server sent, not a re-serialization', async () => {
    const big = `{"blob":"${'x'.repeat(1_000_000)}","end":"é"}`
    const { source } = await scripted((res, url) => {
      if (url.includes('/changes')) {
        const lines = odd.map((data, i) => changeLine(i + 1, i + 1, data))
        lines.push(changeLine(6, 6, big))
        v1Head(res, 200, 'ndjson', 'e1')
        // Written in small pieces so that lines, escapes and characters straddle chunks.
        const body = `${lines.join('\n')}\n${JSON.stringify({ end: true, epoch: 'e1', head: 6, last: 6 })}\n`
        const bytes = Buffer.from(body)
        let i = 0
        const step = (): void => {
          if (i >= bytes.length) return void res.end()
          const n = i < 2000 ? 7 : 65_521
          res.write(bytes.subarray(i, i + n))
          i += n
          setImmediate(step)
        }
        step()
      } else if (url.includes('/snapshot')) {
        v1Head(res, 200, 'ndjson', 'e1')
        const rows = odd.map((data, i) => `{"key":"k${i}","seq":${i + 1},"data":${data}}`)
        res.end(`${rows.join('\n')}\n${JSON.stringify({ end: true, epoch: 'e1', head: 9, last: 'k4', done: true, rows: rows.length })}\n`)
      } else {
        v1Head(res, 200, 'json')
        const rows = odd.map((data, i) => `{"key":"k${i}","seq":${i + 1},"data":${data}}`)
        res.end(`{"epoch":"e1","head":9,"rows":[${rows.join(',')},{"key":"gone","seq":7,"deleted":true}]}`)
      }
    })
    const page = await source.changes('f', { after: 0 })
    assert.deepEqual(
      page.changes.map((c) => (c as StoredChange).dataText),
      [...odd, big],
    )
    assert.deepEqual(page.changes[2]?.data, { fake: '","tx":9,"ts":9}' })
    const snap = await source.snapshot('f', { after: null })
    assert.deepEqual(snap.rows.map((r) => (r as StoredRow).dataText), odd)
    const rows = await source.rows('f', ['k0', 'k1', 'k2', 'k3', 'k4', 'gone'])
    assert.deepEqual(rows.rows.map((r) => (r as StoredRow).dataText), [...odd, null])
    assert.equal(rows.rows[5]?.deleted, true)
  })
})

describe('HttpFeedSource: listings that break the rules', () => {
  const cases: Array<[string, string[], { head: number; last: number } | false, (e: unknown) => boolean]> = [
    ['a gap', [changeLine(1), changeLine(3)], { head: 3, last: 3 }, protocol(/skips to seq 3 where 2 was due/)],
    ['a repeated seq', [changeLine(1), changeLine(2), changeLine(2)], { head: 3, last: 2 }, protocol(/repeats seq 2/)],
    ['a first change not after+1', [changeLine(2)], { head: 2, last: 2 }, protocol(/skips to seq 2 where 1 was due/)],
    ['a page ending mid-transaction', [changeLine(1, 2)], { head: 2, last: 1 }, protocol(/ended inside a transaction: change 1 belongs to the transaction ending at 2/)],
    ['a change of another tx inside a transaction', [changeLine(1, 3), changeLine(2, 2)], { head: 3, last: 2 }, protocol(/change 2 has tx 2 inside the transaction ending at 3/)],
    ['tx below seq', [changeLine(1, 1), changeLine(2, 1)], { head: 2, last: 2 }, protocol(/change 2 has tx 1/)],
    ['an end line with the wrong last', [changeLine(1)], { head: 1, last: 4 }, protocol(/says last 4, but the last change sent was 1/)],
    ['an end line below what was sent', [changeLine(1), changeLine(2)], { head: 1, last: 2 }, protocol(/sent change 2 but ended at head 1/)],
    ['a garbage line', [changeLine(1), '<html>oops</html>'], { head: 1, last: 1 }, protocol(/not a JSON line: "<html>oops<\/html>"/)],
    ['a JSON line that is no change', [changeLine(1), '{"hello":"world"}'], { head: 1, last: 1 }, protocol(/needs numbers seq, tx, ts/)],
    ['a change without an end line', [changeLine(1), changeLine(2)], false, protocol(/response cut after 2 changes: the listing has no end line/)],
    ['an empty body', [], false, protocol(/response cut after 0 changes/)],
  ]
  for (const [name, lines, end, check] of cases) {
    it(`refuses ${name}`, async () => {
      const { source } = await scripted((res) => v1Changes(res, lines, end))
      await assert.rejects(source.changes('f', { after: 0 }), check)
    })
  }

  it('refuses a line after the end line', async () => {
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(`${JSON.stringify({ end: true, epoch: 'e1', head: 0, last: 0 })}\n${changeLine(1)}\n`)
    })
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/a line follows the end line/))
  })

  it('says a body cut mid-line was cut, and how far into the line', async () => {
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(`${changeLine(1)}\n${changeLine(2)}\n{"seq":3,"key":"k3","op":"ups`)
    })
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/response cut after 2 changes \(mid-line, 29 bytes into the next\)/))
  })

  it('treats a connection broken mid-body as the source being unavailable', async () => {
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.write(`${changeLine(1)}\n{"seq":2,"ke`)
      setTimeout(() => res.socket?.destroy(), 20)
    })
    await assert.rejects(source.changes('f', { after: 0 }), isCode('store-unavailable', /connection to http:\/\/127\.0\.0\.1:\d+ broke mid-response to GET \/v1\/feeds\/f\/changes/))
  })

  it('re-bootstraps on an end line of another epoch than the header (the feed was reset while listing)', async () => {
    const { source } = await scripted((res) => v1Changes(res, [changeLine(1)], { head: 1, last: 1, epoch: 'e2' } as never))
    await assert.rejects(source.changes('f', { after: 0, epoch: 'e1' }), (e) => {
      assert.ok(e instanceof EpochChangedError)
      assert.deepEqual([e.feed, e.expected, e.actual], ['f', 'e1', 'e2'])
      return true
    })
  })

  it('re-bootstraps when the listing is of another epoch than asked for', async () => {
    const { source } = await scripted((res) => v1Changes(res, [], { head: 0, last: 0 }, 'e9'))
    await assert.rejects(source.changes('f', { after: 0, epoch: 'e1' }), (e) => e instanceof EpochChangedError && e.actual === 'e9')
  })

  it('refuses a listing without its epoch header', async () => {
    const { source } = await scripted((res) => {
      res.writeHead(200, { 'tidemark-protocol': '1', 'content-type': 'application/x-ndjson' })
      res.end(`${JSON.stringify({ end: true, epoch: 'e1', head: 0, last: 0 })}\n`)
    })
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/without a tidemark-epoch header/))
  })

  it('throws the error an error line ends the listing with', async () => {
    let line = ''
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(`${changeLine(1)}\n${line}\n`)
    })
    line = JSON.stringify({ error: 'store-unavailable', message: 'cannot read /srv/shop.db: disk I/O error' })
    await assert.rejects(source.changes('f', { after: 0 }), isCode('store-unavailable', /disk I\/O error/))
    line = JSON.stringify({ error: 'log-truncated', message: 'gone', feed: 'f', after: 1, minSeq: 50 })
    await assert.rejects(source.changes('f', { after: 0 }), (e) => e instanceof LogTruncatedError && e.after === 0 && e.minSeq === 50)
    line = JSON.stringify({ error: 'internal', message: 'a bug' })
    await assert.rejects(source.changes('f', { after: 0 }), isCode('store-unavailable', /a bug/))
  })

  it('checks snapshot chunks: key order, the end line, seqs within the head, the limit', async () => {
    let body = ''
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(body)
    })
    let sent = 0
    const end = (last: string | null, head = 9, done = true): string => {
      const line = `${JSON.stringify({ end: true, epoch: 'e1', head, last, done, rows: sent })}\n`
      sent = 0
      return line
    }
    const row = (key: string, seq = 1): string => {
      sent++
      return `${JSON.stringify({ key, seq, data: 1 })}\n`
    }
    body = row('b') + row('a') + end('a')
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/key "a" after "b": keys must rise/))
    body = row('a') + end('a')
    await assert.rejects(source.snapshot('f', { after: 'a' }), protocol(/key "a" after "a"/))
    body = row('a') + row('b') + end('a')
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/says last "a", but the last key sent was "b"/))
    body = row('a', 10) + end('a')
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/read at head 9 has row "a" at seq 10/))
    body = row('a') + row('b') + end('b')
    await assert.rejects(source.snapshot('f', { after: null, limit: 1 }), protocol(/more than the 1 rows asked for/))
    body = row('a') + row('b')
    sent = 0
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/response cut after 2 rows/))
    body = row('a') + `${JSON.stringify({ end: true, epoch: 'e1', head: 9, last: 'a' })}\n`
    sent = 0
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/needs epoch, head, last and done/))
    body = row('a') + `${JSON.stringify({ end: true, epoch: 'e0', head: 9, last: 'a', done: true, rows: 1 })}\n`
    sent = 0
    await assert.rejects(source.snapshot('f', { after: null }), EpochChangedError)
    body = row('a') + row('c') + `${JSON.stringify({ end: true, epoch: 'e1', head: 9, last: 'c', done: true, rows: 3 })}\n`
    sent = 0
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/counts "3" rows, but 2 were sent/))
    body = row('\uffff') + row('😀') + end('😀')
    assert.equal((await source.snapshot('f', { after: null })).rows.length, 2, 'UTF-8 byte order, not UTF-16')
    body = end(null, 0, true)
    assert.deepEqual(await source.snapshot('f', { after: null }), { epoch: 'e1', head: 0, rows: [], last: null, done: true })
  })

  it('checks rows answers: only keys asked for, once each, within the head; a cut document', async () => {
    let body = ''
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'json')
      res.end(body)
    })
    body = '{"epoch":"e1","head":5,"rows":[{"key":"x","seq":1,"data":1}]}'
    await assert.rejects(source.rows('f', ['a']), protocol(/answered key "x", which was not asked for/))
    body = '{"epoch":"e1","head":5,"rows":[{"key":"a","seq":1,"data":1},{"key":"a","seq":1,"data":1}]}'
    await assert.rejects(source.rows('f', ['a']), protocol(/answered key "a" twice/))
    body = '{"epoch":"e1","head":5,"rows":[{"key":"a","seq":6,"data":1}]}'
    await assert.rejects(source.rows('f', ['a']), protocol(/at seq 6, above its head 5/))
    body = '{"epoch":"e1","head":5,"rows":[{"key":"a","seq":1,"data":{"x":'
    await assert.rejects(source.rows('f', ['a']), protocol(/not a JSON line/))
    await assert.rejects(source.rows('f', Array.from({ length: 10_001 }, (_, i) => `k${i}`)), BadRequestError)
    await assert.rejects(source.rows('f', ['']), BadRequestError)
  })

  it('checks a feed description', async () => {
    let body: Record<string, unknown> = {}
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'json')
      res.end(JSON.stringify(body))
    })
    const good = { name: 'f', epoch: 'e1', head: 5, minSeq: 1, keys: 3, digestSeq: 5, retention: {} }
    body = good
    assert.deepEqual(await source.info('f'), good)
    body = { ...good, name: 'g' }
    await assert.rejects(source.info('f'), protocol(/a feed with name "g"/))
    body = { ...good, head: -1 }
    await assert.rejects(source.info('f'), protocol(/no head/))
    body = { ...good, minSeq: 7 }
    await assert.rejects(source.info('f'), protocol(/minSeq 7/))
  })
})

describe('HttpFeedSource: a hostile server cannot exhaust the replica', () => {
  /** A listing whose one line never ends: 1 MB chunks with no newline, up to 50 MB, as fast as the client takes them. */
  async function endlessLine(path: 'changes' | 'snapshot') {
    let written = 0
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      const chunk = Buffer.alloc(1024 * 1024, 'a')
      res.write(path === 'changes' ? '{"seq":1,"key":"k1","op":"upsert","data":"' : '{"key":"k1","seq":1,"data":"')
      let closed = false
      res.on('close', () => (closed = true))
      void (async () => {
        while (!closed && written < 50 * 1024 * 1024) {
          written += chunk.length
          if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve))
        }
        res.end()
      })()
    })
    return { source, written: () => written }
  }

  for (const path of ['changes', 'snapshot'] as const) {
    it(`refuses a ${path} line over the protocol's bound as it comes, without reading the rest`, async () => {
      const { source, written } = await endlessLine(path)
      const call = path === 'changes' ? source.changes('f', { after: 0 }) : source.snapshot('f', { after: null })
      await assert.rejects(call, protocol(new RegExp(`line 1 of the response is over ${LIMITS.lineBytes} bytes, longer than the protocol allows`)))
      // Far less than the 50 MB were sent: the client hung up (the socket's buffers hold a few MB at most).
      assert.ok(written() < 20 * 1024 * 1024, `the server got to write ${written()} bytes`)
    })
  }

  it('refuses data over the protocol\'s 1 MiB, in changes, snapshot rows and rows by key', async () => {
    const big = JSON.stringify('x'.repeat(LIMITS.dataBytes - 1)) // 1 MiB + 1 byte with its quotes
    let body = ''
    const { source } = await scripted((res, url) => {
      if (url.includes('/rows')) {
        v1Head(res, 200, 'json')
        res.end(`{"epoch":"e1","head":1,"rows":[{"key":"k1","seq":1,"data":${big}}]}`)
        return
      }
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(body)
    })
    body = `${changeLine(1, 1, big)}\n${JSON.stringify({ end: true, epoch: 'e1', head: 1, last: 1 })}\n`
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/change 1 has data of 1048577 bytes, over the protocol's 1048576/))
    body = `{"key":"k1","seq":1,"data":${big}}\n${JSON.stringify({ end: true, epoch: 'e1', head: 1, last: 'k1', done: true, rows: 1 })}\n`
    await assert.rejects(source.snapshot('f', { after: null }), protocol(/row "k1" has data of 1048577 bytes/))
    await assert.rejects(source.rows('f', ['k1']), protocol(/row "k1" has data of 1048577 bytes/))
    // Exactly at the limit is fine.
    const most = JSON.stringify('x'.repeat(LIMITS.dataBytes - 2))
    body = `${changeLine(1, 1, most)}\n${JSON.stringify({ end: true, epoch: 'e1', head: 1, last: 1 })}\n`
    assert.equal((await source.changes('f', { after: 0 })).changes.length, 1)
  })

  it('refuses a rows answer larger than the keys asked for can be', async () => {
    const { source } = await scripted((res) => {
      v1Head(res, 200, 'json')
      res.write('{"epoch":"e1","head":1,"rows":[')
      res.end(`{"key":"k1","seq":1,"data":"${'y'.repeat(2 * LIMITS.lineBytes)}"}]}`)
    })
    await assert.rejects(source.rows('f', ['k1']), protocol(/answered more than \d+ bytes, more than the protocol allows/))
  })

  it('stops reading a listing past maxPageBytes and uses what is whole; refuses one transaction far larger', async () => {
    let lines: string[] = []
    // Sent a few lines at a time, so that the client sees the listing grow (not all of it in one chunk).
    const trickle = async (res: ServerResponse, body: string[], end: unknown): Promise<void> => {
      for (let i = 0; i < body.length && !res.destroyed; i++) {
        res.write(`${body[i]}\n`)
        if (i % 5 === 4) await new Promise((resolve) => setTimeout(resolve, 2))
      }
      if (!res.destroyed) res.end(`${JSON.stringify(end)}\n`)
    }
    const { source } = await scripted((res, url) => {
      res.writeHead(200, { 'tidemark-protocol': '1', 'content-type': 'application/x-ndjson', 'tidemark-epoch': 'e1', 'tidemark-head': '100' })
      if (url.includes('/snapshot')) {
        const rows = Array.from({ length: 100 }, (_, i) => `{"key":"k${String(i + 1).padStart(3, '0')}","seq":${i + 1},"data":"${'r'.repeat(80)}"}`)
        void trickle(res, rows, { end: true, epoch: 'e1', head: 100, last: 'k100', done: true, rows: 100 })
        return
      }
      void trickle(res, lines, { end: true, epoch: 'e1', head: 100, last: 100 })
    }, { maxPageBytes: 1000 })
    // Two-change transactions of ~100 bytes a change: cut at a transaction boundary past 1000 bytes.
    lines = Array.from({ length: 100 }, (_, i) => changeLine(i + 1, i % 2 === 0 ? i + 2 : i + 1, JSON.stringify('c'.repeat(40))))
    const page = await source.changes('f', { after: 0 })
    assert.ok(page.changes.length > 0 && page.changes.length < 100, `${page.changes.length} changes`)
    assert.equal(page.changes.length % 2, 0, 'whole transactions only')
    assert.equal(page.last, page.changes.length)
    const chunk = await source.snapshot('f', { after: null })
    assert.ok(chunk.rows.length > 0 && chunk.rows.length < 100)
    assert.deepEqual([chunk.done, chunk.head, chunk.last], [false, 100, chunk.rows.at(-1)?.key])
    // One transaction of all 100 changes (~7 KB): past 4 × 1000 bytes with nothing whole.
    lines = Array.from({ length: 100 }, (_, i) => changeLine(i + 1, 100, JSON.stringify('c'.repeat(40))))
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/passed 4000 bytes with no whole transaction in it: nothing of it is used/))
  })

  it('refuses an empty or unsendable token', () => {
    assert.throws(() => new HttpFeedSource('http://127.0.0.1:1', { token: '' }), /the token is empty/)
    assert.throws(() => new HttpFeedSource('http://127.0.0.1:1', { token: ' ' }), /the token is empty/)
    assert.throws(() => new HttpFeedSource('http://127.0.0.1:1', { token: 'a b' }), /contains a space/)
  })
})

describe('HttpFeedSource: answers that are not the protocol', () => {
  it('refuses a 200 without the protocol header: not a feed server', async () => {
    const { source } = await scripted((res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<!doctype html><title>Welcome to nginx</title>')
    })
    await assert.rejects(source.info('f'), (e: unknown) => {
      // Its own code: a configuration error (the URL leads elsewhere), not a fault to retry.
      assert.ok(e instanceof NotAFeedServerError, `a NotAFeedServerError, got ${String(e)}`)
      assert.match(e.message, /answered 200 without a tidemark-protocol header: is this a tidemark feed server\? \(body: "<!doctype html><title>Welcome to nginx/)
      return true
    })
  })

  it('refuses another protocol version', async () => {
    const { source } = await scripted((res) => {
      res.writeHead(200, { 'tidemark-protocol': '2', 'content-type': 'application/json' })
      res.end('{}')
    })
    await assert.rejects(source.info('f'), protocol(/speaks tidemark protocol "2"; this replica speaks 1/))
  })

  it('refuses the wrong content type', async () => {
    const { source } = await scripted((res) => {
      res.writeHead(200, { 'tidemark-protocol': '1', 'content-type': 'text/plain' })
      res.end('hello')
    })
    await assert.rejects(source.changes('f', { after: 0 }), protocol(/answered "text\/plain" where application\/x-ndjson was due: "hello"/))
  })

  it('rebuilds the server refusals', async () => {
    let status = 0
    let body: Record<string, unknown> | string = {}
    const { source } = await scripted((res) => {
      if (typeof body === 'string') {
        v1Head(res, status, 'json')
        res.end(body)
      } else v1Error(res, status, body)
    })
    const ask = () => source.changes('f', { after: 3, epoch: 'e1' })

    status = 409
    body = { error: 'epoch-changed', message: 'reset', feed: 'f', epoch: 'e2' }
    await assert.rejects(ask(), (e) => e instanceof EpochChangedError && e.expected === 'e1' && e.actual === 'e2')
    status = 410
    body = { error: 'log-truncated', message: 'old', feed: 'f', after: 3, minSeq: 40 }
    await assert.rejects(ask(), (e) => e instanceof LogTruncatedError && e.after === 3 && e.minSeq === 40)
    status = 404
    body = { error: 'unknown-feed', message: 'no', feed: 'f' }
    await assert.rejects(ask(), (e) => e instanceof UnknownFeedError && e.feed === 'f')
    status = 400
    body = { error: 'bad-request', message: 'query parameter "limit" must be …', parameter: 'limit' }
    await assert.rejects(ask(), (e) => e instanceof BadRequestError && e.details.parameter === 'limit' && /limit/.test(e.message))
    status = 401
    body = { error: 'unauthorized', message: 'this feed server needs a bearer token' }
    await assert.rejects(ask(), isCode('unauthorized', /needs a bearer token/))
    status = 403
    body = { error: 'forbidden', message: 'not this feed' }
    await assert.rejects(ask(), isCode('forbidden'))
    status = 503
    body = { error: 'store-unavailable', message: 'database is locked' }
    await assert.rejects(ask(), isCode('store-unavailable', /database is locked/))
    status = 500
    body = { error: 'internal', message: 'a bug' }
    await assert.rejects(ask(), (e) => isCode('store-unavailable', /a bug/)(e) && (e as TidemarkError).details.serverError === 'internal')
    status = 418
    body = { error: 'teapot', message: 'short and stout' }
    await assert.rejects(ask(), protocol(/answered 418 with "teapot" error code: short and stout/))
    status = 409
    body = { error: 'epoch-changed', message: 'reset' }
    await assert.rejects(ask(), protocol(/without the feed's epoch/))
    status = 400
    body = 'Bad Request'
    await assert.rejects(ask(), protocol(/answered 400: "Bad Request" \(not a tidemark error body\)/))
  })

  it('takes a 5xx from a proxy in front of the server as the source being unavailable', async () => {
    const { source } = await scripted((res) => {
      res.writeHead(502, { 'content-type': 'text/html' })
      res.end('<html><body>502 Bad Gateway</body></html>')
    })
    await assert.rejects(source.info('f'), isCode('store-unavailable', /answered 502: "<html><body>502 Bad Gateway/))
  })
})

describe('HttpFeedSource: network failures and timeouts', () => {
  it('cannot reach a port nobody listens on: store-unavailable', async () => {
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const { port } = probe.address() as { port: number }
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const source = httpSource(`http://127.0.0.1:${port}`)
    await assert.rejects(source.info('f'), (e) => {
      isCode('store-unavailable', new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port} \\(GET /v1/feeds/f\\): .*ECONNREFUSED`))(e)
      assert.ok((e as Error).cause instanceof Error)
      return true
    })
  })

  it('gives up on a server that accepts and never answers, after the wait plus the margin', async () => {
    const { source } = await scripted(() => {}, { timeoutMs: 300 })
    let t0 = Date.now()
    await assert.rejects(source.info('f'), isCode('store-unavailable', /no answer from .* to GET \/v1\/feeds\/f within 300 ms/))
    assert.ok(Date.now() - t0 >= 250 && Date.now() - t0 < 5000)
    t0 = Date.now()
    await assert.rejects(source.changes('f', { after: 0, waitMs: 400 }), isCode('store-unavailable', /within 700 ms/))
    assert.ok(Date.now() - t0 >= 650, 'a long-poll is given its wait before the margin starts')
  })

  it('gives up on a body that stops arriving', async () => {
    const { source } = await scripted(
      (res) => {
        v1Head(res, 200, 'ndjson', 'e1')
        res.write(`${changeLine(1)}\n`)
      },
      { timeoutMs: 300 },
    )
    await assert.rejects(source.changes('f', { after: 0 }), isCode('store-unavailable', /stopped sending mid-response .* for 300 ms/))
  })

  it('aborts a request under way at once, with the signal reason; close() ends those left', async () => {
    const { source } = await scripted(() => {})
    const controller = new AbortController()
    const reason = new Error('stop')
    const t0 = Date.now()
    const pending = source.changes('f', { after: 0, waitMs: 30_000, signal: controller.signal })
    setTimeout(() => controller.abort(reason), 20)
    await assert.rejects(pending, (e) => e === reason)
    assert.ok(Date.now() - t0 < 2000)
    await assert.rejects(source.info('f', AbortSignal.abort(reason)), (e) => e === reason)

    const left = assert.rejects(source.changes('f', { after: 0, waitMs: 30_000 }), isCode('store-unavailable', /is closed/))
    await new Promise((resolve) => setTimeout(resolve, 20))
    await source.close()
    await left
    await assert.rejects(source.info('f'), isCode('store-unavailable', /is closed/))
  })
})
