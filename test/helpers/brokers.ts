/**
 * Real brokers for `*.nats.test.ts` and `*.amqp.test.ts`: the one at the URL in
 * TIDEMARK_TEST_NATS_URL / TIDEMARK_TEST_AMQP_URL, else the local one when it answers
 * (127.0.0.1:4222, 127.0.0.1:5672), else — for NATS — a nats-server this test run starts itself
 * (installed with apt-get when missing). Never skipped: no broker is a failure that says why.
 *
 * Tests that must restart or wipe a broker always start their own (`startNatsServer`): the shared
 * ones belong to everybody on the machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { createServer, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { after } from 'node:test'
import { tmpDir } from './tmp.js'

let unique = 0
/** A name no other test (or parallel test run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid}x${Date.now().toString(36)}x${unique++}`
}

function answers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function binary(name: string, apt: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin']) if (existsSync(join(dir, name))) return join(dir, name)
  const install = spawnSync('sh', ['-c', `apt-get install -y ${apt} || (apt-get update && apt-get install -y ${apt})`], { stdio: 'inherit' })
  for (const dir of ['/usr/sbin', '/usr/bin']) if (existsSync(join(dir, name))) return join(dir, name)
  throw new Error(`no ${name} and installing ${apt} failed (exit ${install.status}): install it, or set the broker's URL in the environment`)
}

export interface NatsServer {
  url: string
  /** Stops the process (SIGTERM, then waits for it). */
  stop(): Promise<void>
  /** Starts it again on the same port; `wipe` deletes its store first (a broker that lost its disk). */
  start(options?: { wipe?: boolean }): Promise<void>
}

/** A nats-server with JetStream of this test's own, on a free port, stopped when the file ends. */
export async function startNatsServer(options: { stopAfter?: boolean } = {}): Promise<NatsServer> {
  const bin = binary('nats-server', 'nats-server')
  const port = await freePort()
  const store = join(tmpDir('tidemark-nats-'), 'js')
  let child: ChildProcess | undefined
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      const c = child
      child = undefined
      if (!c || c.exitCode !== null) return
      const exited = new Promise((resolve) => c.once('exit', resolve))
      c.kill('SIGTERM')
      await exited
    },
    async start(options = {}) {
      if (options.wipe) rmSync(store, { recursive: true, force: true })
      child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], { stdio: 'ignore' })
      // A failed spawn is an 'error' event: unheard, it would crash the whole test file.
      let failed: Error | undefined
      child.once('error', (error) => (failed = error))
      for (let i = 0; i < 200; i++) {
        if (failed) throw new Error(`could not start ${bin}: ${failed.message}`)
        if (await answers('127.0.0.1', port)) return
        await new Promise((r) => setTimeout(r, 50))
      }
      throw new Error(`nats-server on port ${port} did not come up`)
    },
  }
  await server.start()
  // A test whose clients must close before the server stops (a client closing against a stopped
  // server, mid-reconnect, can fail outside any await) stops it itself, last.
  if (options.stopAfter !== false) after(() => server.stop())
  return server
}

let sharedNats: Promise<string> | undefined
/** The NATS URL tests use: env, else the local one, else one started for this run. */
export function natsUrl(): Promise<string> {
  sharedNats ??= (async () => {
    const env = process.env.TIDEMARK_TEST_NATS_URL
    if (env) return env
    if (await answers('127.0.0.1', 4222)) return 'nats://127.0.0.1:4222'
    return (await startNatsServer()).url
  })()
  return sharedNats
}

let sharedAmqp: Promise<string> | undefined
/** The RabbitMQ URL tests use: env, else the local one, else one started for this run. */
export function amqpUrl(): Promise<string> {
  sharedAmqp ??= (async () => {
    const env = process.env.TIDEMARK_TEST_AMQP_URL
    if (env) return env
    if (await answers('127.0.0.1', 5672)) return 'amqp://guest:guest@127.0.0.1:5672'
    return startRabbitMq()
  })()
  return sharedAmqp
}

/** A rabbitmq-server node of this run's own (slow to start: only when no other RabbitMQ answers). */
async function startRabbitMq(): Promise<string> {
  const bin = binary('rabbitmq-server', 'rabbitmq-server')
  const port = await freePort()
  const dist = await freePort()
  const base = tmpDir('tidemark-rabbit-')
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: `tidemark${process.pid}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: join(base, 'mnesia'),
    RABBITMQ_LOG_BASE: join(base, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(base, 'plugins'),
  }
  const child = spawn(bin, [], { env, stdio: 'ignore' })
  child.once('error', () => {}) // a failed spawn shows as the server not coming up, below
  after(() => {
    child.kill('SIGTERM')
  })
  for (let i = 0; i < 600; i++) {
    if (await answers('127.0.0.1', port)) return `amqp://guest:guest@127.0.0.1:${port}`
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`rabbitmq-server on port ${port} did not come up within a minute`)
}
