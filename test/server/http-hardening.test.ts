/**
 * The feed server against clients that do not play by HTTP's rules or are slow on purpose: what
 * Node's parser refuses is answered in the protocol's shape, a request that takes too long is cut
 * off, a refusal does not wait for a body that may never end, prototype-poisoning keys are named.
 * Raw sockets on 127.0.0.1, since a well-behaved client cannot send these.
 */
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { TidemarkError } from '../../src/errors.js'
import { PROTOCOL_HEADER } from '../../src/server/http-protocol.js'
import { serve, sleep } from './helpers.js'

interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
  /** Whether the server closed the connection (by the time the answer was read). */
  closed: boolean
}

/** Opens a connection; `send` writes to it; resolves once the server closed it, with what it answered. */
function raw(port: number, send: (socket: Socket) => void | Promise<void>, guardMs = 20_000): Promise<RawAnswer & { text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const guard = setTimeout(() => {
      socket.destroy()
      reject(new Error(`the server kept the connection open for ${guardMs} ms; it answered: ${JSON.stringify(text)}`))
    }, guardMs)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (text += d))
    socket.on('error', () => {}) // a reset after the answer is fine: the answer is what is checked
    socket.on('close', () => {
      clearTimeout(guard)
      resolve({ ...parseAnswer(text), closed: true, text })
    })
    socket.on('connect', () => {
      Promise.resolve(send(socket)).catch(() => {})
    })
  })
}

function parseAnswer(text: string): Omit<RawAnswer, 'closed'> {
  const end = text.indexOf('\r\n\r\n')
  if (end < 0) return { status: 0, headers: {}, body: text }
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine?.split(' ')[1]), headers, body: text.slice(end + 4) }
}

/** The answer is the protocol's error: status, header, JSON body with the code. */
function protocolError(answer: RawAnswer, status: number, code: string, message?: RegExp): void {
  assert.equal(answer.status, status, JSON.stringify(answer))
  assert.equal(answer.headers[PROTOCOL_HEADER], '1', JSON.stringify(answer.headers))
  assert.match(answer.headers['content-type'] ?? '', /^application\/json/)
  const body = JSON.parse(answer.body.replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '')) as { error: string; message: string }
  assert.equal(body.error, code)
  if (message) assert.match(body.message, message)
}

async function listening(options: Parameters<typeof serve>[0] = {}) {
  const fx = await serve(options)
  await fx.store.ensureFeed('customers')
  await fx.store.write('customers', [{ op: 'upsert', key: 'a', data: { name: 'Ada' } }])
  const { url } = await fx.server.listen({ port: 0 })
  return { ...fx, port: Number(new URL(url).port) }
}

describe('feed server: what Node\'s HTTP parser refuses', () => {
  it('answers each in the protocol\'s error shape with its header, and closes the connection', async () => {
    const { port } = await listening()
    const cases: Array<[string, string, number, string, RegExp]> = [
      ['a 20 KB header', `GET /v1/feeds HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'too-large', /headers are over 16 KiB/],
      ['an unknown method', 'FOO /v1/feeds HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad-request', /unknown HTTP method/],
      ['bare LF line endings', 'GET /v1/feeds HTTP/1.1\nHost: x\n\n', 400, 'bad-request', /malformed HTTP request \(HPE_/],
      [
        'Content-Length with Transfer-Encoding',
        'POST /v1/feeds/customers/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        400,
        'bad-request',
        /malformed HTTP request \(HPE_/,
      ],
      ['a missing Host', 'GET /v1/feeds HTTP/1.1\r\n\r\n', 400, 'bad-request', /needs a Host header/],
    ]
    for (const [what, request, status, code, message] of cases) {
      const answer = await raw(port, (s) => void s.write(request))
      try {
        protocolError(answer, status, code, message)
      } catch (error) {
        throw new Error(`${what}: ${(error as Error).message}`)
      }
    }
    // HTTP/1.0 needs no Host: still served.
    const old = await raw(port, (s) => void s.write('GET /healthz HTTP/1.0\r\n\r\n'))
    assert.equal(old.status, 200, old.text)
  })
})

describe('feed server: slow clients', () => {
  it('cuts off a request whose body trickles in, with 408 in the protocol\'s shape', async () => {
    const { port } = await listening({ limits: { requestTimeoutMs: 400, headersTimeoutMs: 200 } })
    let sent = 0
    const answer = await raw(port, async (s) => {
      s.write('POST /v1/feeds/customers/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{')
      while (!s.destroyed && sent < 200) {
        await sleep(50)
        if (!s.destroyed) s.write(' ')
        sent++
      }
    })
    protocolError(answer, 408, 'bad-request', /did not arrive within 400 ms/)
    assert.ok(sent < 200, 'cut off while it was still sending')
  })

  it('cuts off a client that sends its headers byte by byte', async () => {
    const { port } = await listening({ limits: { requestTimeoutMs: 1000, headersTimeoutMs: 200 } })
    const request = 'GET /v1/feeds HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000)
    let i = 0
    const answer = await raw(port, async (s) => {
      while (!s.destroyed && i < request.length) {
        s.write(request[i++] as string)
        await sleep(10)
      }
    })
    protocolError(answer, 408, 'bad-request', /did not arrive/)
    assert.ok(i < request.length, 'cut off before it finished its headers')
  })

  it('closes the connection after refusing a request whose body has not all come (a 401 does not wait for it)', async () => {
    const { port } = await listening({
      authorize: ({ token }) => {
        if (token !== 'secret') throw new TidemarkError('unauthorized', 'send the token')
      },
      // Long, so that only the refusal can be what closes the connection.
      limits: { requestTimeoutMs: 60_000, headersTimeoutMs: 10_000 },
    })
    let writing = true
    const answer = await raw(port, async (s) => {
      s.write('POST /v1/feeds/customers/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{')
      while (writing && !s.destroyed) {
        await sleep(100)
        if (!s.destroyed) s.write(' ')
      }
    }, 10_000)
    writing = false
    protocolError(answer, 401, 'unauthorized')
    assert.equal(answer.headers.connection, 'close')
  })

  it('still serves a long-poll that waits longer than the request timeout (the timer stops once the request is in)', async () => {
    const { port } = await listening({ limits: { requestTimeoutMs: 300, headersTimeoutMs: 200 } })
    const answer = await raw(port, (s) => void s.write('GET /v1/feeds/customers/changes?after=1&wait=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    assert.equal(answer.status, 200, answer.text)
    assert.match(answer.body, /"end":true/)
  })
})

describe('feed server: JSON bodies', () => {
  it('refuses __proto__ and constructor.prototype keys by name, and says what is wrong with invalid JSON', async () => {
    const { server } = await listening()
    const post = (payload: string) =>
      server.app.inject({ method: 'POST', url: '/v1/feeds/customers/rows', headers: { 'content-type': 'application/json' }, payload })
    const cases: Array<[string, RegExp]> = [
      ['{"keys":["1"],"__proto__":{}}', /"__proto__" key, which is refused: such a key can change the prototype .*prototype poisoning/],
      ['{"keys":["1"],"\\u005f_proto__":{"x":1}}', /"__proto__" key/],
      ['{"keys":["1"],"a":{"constructor":{"prototype":{"x":1}}}}', /"constructor" key holding a "prototype"/],
      ['{"keys":["1"', /the body is not valid JSON: /],
      ['', /the body is empty/],
    ]
    for (const [payload, message] of cases) {
      const res = await post(payload)
      assert.equal(res.statusCode, 400, `${payload}: ${res.body}`)
      assert.equal(res.headers[PROTOCOL_HEADER], '1')
      const body = res.json() as { error: string; message: string }
      assert.equal(body.error, 'bad-request')
      assert.match(body.message, message, payload)
    }
    // A key that merely mentions the words, or a \u escape elsewhere, is fine.
    const fine = await post('{"keys":["a","constructor","__proto__x","\\u0061"]}')
    assert.equal(fine.statusCode, 200, fine.body)
    assert.deepEqual((fine.json() as { rows: Array<{ key: string }> }).rows.map((r) => r.key), ['a'])
  })

  it('says what the body limit is', async () => {
    const { server } = await listening({ limits: { bodyBytes: 100 } })
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/feeds/customers/rows',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ keys: Array.from({ length: 50 }, (_, i) => `k${i}`) }),
    })
    assert.equal(res.statusCode, 413, res.body)
    assert.match((res.json() as { message: string }).message, /over this server's limit of 100 bytes/)
  })
})
