/**
 * Some of the consumers of a fan-out measurement, in this one process (argv[2] is a FanOutJob as
 * JSON; the bench starts one process per consumer by default): either tidemark replicas (each
 * with its own SQLite replica file, WAL, and its own connections) over one transport, or raw
 * broker consumers that only count messages. Over IPC it says `ready` once its consumers are
 * subscribed, is told to `start` (it counts its CPU time from then), is told the `target` (a seq
 * for replicas, a message count for raw consumers), and says `done` with its CPU time when every
 * one of its consumers has reached it.
 */
import type { Database } from 'better-sqlite3'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { DeliverPolicy, jetstream } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import { connect as amqpConnect } from 'amqplib'
import { createReplica, type Replica } from '../../src/replica/replica.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { Logger } from '../../src/store/store.js'
import { replicaQueueName } from '../../src/transport/amqp/amqp-settings.js'
import { AmqpTransport } from '../../src/transport/amqp/amqp-transport.js'
import { FallbackTransport } from '../../src/transport/broker/fallback-transport.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { NatsTransport } from '../../src/transport/nats/nats-transport.js'
import type { ChangeTransport } from '../../src/transport/transport.js'

export type FanOutMode = 'http' | 'nats' | 'amqp' | 'raw-nats' | 'raw-amqp'

export interface FanOutJob {
  mode: FanOutMode
  /** This process's consumers are numbers from … from + count - 1 (replica `r<n>`). */
  from: number
  count: number
  /** Where the replica files go. */
  dir: string
  feedUrl: string
  feed: string
  natsUrl: string
  amqpUrl: string
  prefix: string
  /** raw-nats: the stream and subject; raw-amqp: the exchange. */
  stream?: string
  subject?: string
  exchange?: string
}

export type FromParent = { start: true } | { target: number }
export type ToParent = { ready: true } | { done: true; checkpoints: number[]; cpuMs: number } | { error: string }

const job = JSON.parse(process.argv[2] as string) as FanOutJob
// TIDEMARK_BENCH_LOG=<file>: what replicas and transports warn about, for a run that does not finish.
const logFile = process.env.TIDEMARK_BENCH_LOG
const write = (m?: string): void => {
  if (logFile) appendFileSync(logFile, `${new Date().toISOString()} ${m ?? ''}\n`)
}
const logger: Logger | undefined = logFile ? { debug() {}, info: (_o, m) => write(m), warn: (_o, m) => write(m), error: (_o, m) => write(m) } : undefined
const send = (m: ToParent): void => void process.send?.(m)
let cpuAtStart = process.cpuUsage()
const target = new Promise<number>((resolve) =>
  process.on('message', (m: FromParent) => {
    if ('start' in m) cpuAtStart = process.cpuUsage()
    else resolve(m.target)
  }),
)
const cpuMs = (): number => {
  const used = process.cpuUsage(cpuAtStart)
  return (used.user + used.system) / 1000
}
const numbers = Array.from({ length: job.count }, (_, i) => job.from + i)

async function replicas(): Promise<void> {
  const stores: SqliteReplicaStore[] = []
  const sources: HttpFeedSource[] = []
  const running: Array<Replica<Database>> = []
  try {
    for (const i of numbers) {
      const source = new HttpFeedSource(job.feedUrl)
      const store = SqliteReplicaStore.open(join(job.dir, `r${i}.db`))
      sources.push(source)
      stores.push(store)
      const longPoll = new LongPollTransport(source)
      const log = logger ? { logger } : {}
      const name = `r${i}`
      let transport: ChangeTransport = longPoll
      if (job.mode === 'nats') transport = new FallbackTransport(new NatsTransport({ servers: job.natsUrl, prefix: job.prefix, ...log }), longPoll, log)
      if (job.mode === 'amqp') transport = new FallbackTransport(new AmqpTransport({ url: job.amqpUrl, prefix: job.prefix, queue: name, ...log }), longPoll, log)
      const replica = createReplica({ source, feed: job.feed, store, name, transport, ...log })
      void replica.run().catch((error: unknown) => send({ error: `${name}: ${(error as Error).message}` }))
      running.push(replica)
    }
    for (const r of running) await r.caughtUp(0)
    while (running.some((r) => r.phase !== 'live')) await new Promise((res) => setTimeout(res, 20))
    if (job.mode === 'amqp') await amqpConsumersUp(numbers.map((i) => replicaQueueName(job.feed, `r${i}`, job.prefix)))
    send({ ready: true })
    const seq = await target
    // A replica that does not get there says where it is, every 30 s (stderr, and the log file).
    const watchdog = setInterval(() => {
      for (const r of running) {
        const st = r.status()
        if (st.checkpoint < seq) {
          const line = `${st.name}: ${st.phase} at ${st.checkpoint} of ${seq}, connected ${st.connected}, last error ${st.lastError}`
          process.stderr.write(`${line}\n`)
          write(line)
        }
      }
    }, 30_000)
    await Promise.all(running.map((r) => r.caughtUp(seq))).finally(() => clearInterval(watchdog))
    send({ done: true, checkpoints: running.map((r) => r.status().checkpoint), cpuMs: cpuMs() })
  } finally {
    await Promise.all(running.map((r) => r.stop()))
    await Promise.all(stores.map((s) => s.close()))
    await Promise.all(sources.map((s) => s.close()))
  }
}

/** RabbitMQ routes a message only to queues that exist: wait until every replica consumes its own. */
async function amqpConsumersUp(queues: string[]): Promise<void> {
  const model = await amqpConnect(job.amqpUrl)
  try {
    for (const queue of queues) {
      for (;;) {
        const ch = await model.createChannel()
        ch.on('error', () => {})
        const count = await ch.checkQueue(queue).then((q) => q.consumerCount, () => 0)
        await ch.close().catch(() => {})
        if (count > 0) break
        await new Promise((res) => setTimeout(res, 20))
      }
    }
  } finally {
    await model.close()
  }
}

/** R consumers that only count what arrives: the broker's own ceiling, with no tidemark in the way. */
async function raw(): Promise<void> {
  const counts = new Array<number>(job.count).fill(0)
  let goal = Number.POSITIVE_INFINITY
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const count = (i: number): void => {
    counts[i] = (counts[i] as number) + 1
    if (counts.every((c) => c >= goal)) finish()
  }
  const closers: Array<() => Promise<unknown>> = []
  if (job.mode === 'raw-nats') {
    for (let i = 0; i < job.count; i++) {
      const nc = await natsConnect({ servers: job.natsUrl })
      closers.push(() => nc.close())
      const consumer = await jetstream(nc).consumers.get(job.stream as string, { filter_subjects: job.subject as string, deliver_policy: DeliverPolicy.All })
      const messages = await consumer.consume({ max_messages: 16 })
      closers.unshift(async () => messages.stop())
      void (async () => {
        for await (const _ of messages) count(i)
      })()
    }
  } else {
    for (let i = 0; i < job.count; i++) {
      const model = await amqpConnect(job.amqpUrl)
      closers.push(() => model.close())
      const ch = await model.createChannel()
      // Durable queues, as the replicas' own: RabbitMQ writes persistent messages in them to disk.
      const q = `${job.exchange as string}.consumer${job.from + i}`
      await ch.assertQueue(q, { durable: true })
      closers.unshift(() => ch.deleteQueue(q))
      await ch.bindQueue(q, job.exchange as string, '#')
      await ch.prefetch(16)
      await ch.consume(q, (m) => {
        if (!m) return
        ch.ack(m)
        count(i)
      })
    }
  }
  send({ ready: true })
  goal = await target
  if (counts.every((c) => c >= goal)) finish()
  await finished
  send({ done: true, checkpoints: counts, cpuMs: cpuMs() })
  for (const close of closers) await close().catch(() => {})
}

try {
  await (job.mode.startsWith('raw-') ? raw() : replicas())
} catch (error) {
  send({ error: (error as Error).stack ?? String(error) })
}
process.disconnect?.()
