/**
 * One fan-out measurement: the consumers (fan-out-child.ts) run in one child process; the owner,
 * the feed server and the relay run in this one, as they would on the owner's side. Timed from the
 * owner's first commit (raw: the first publish) until every consumer has everything.
 */
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import { connect as amqpConnect } from 'amqplib'
import type { Change, Json } from '../../protocol/types.js'
import { createRelay, MESSAGE_DEFAULTS } from '../../relay/relay.js'
import type { SourceStore } from '../../store/store.js'
import { relayQueueName, replicaQueueName, exchangeName } from '../../transport/amqp/amqp-settings.js'
import { AmqpSink } from '../../transport/amqp/amqp-sink.js'
import { encodeBatch, splitIntoBatches } from '../../transport/broker/broker-message.js'
import { LocalFeedSource } from '../../transport/local-feed-source.js'
import { NatsSink } from '../../transport/nats/nats-sink.js'
import { streamName } from '../../transport/nats/nats-settings.js'
import { nowMs, runNodeChild, type TempDirs } from '../harness.js'
import type { FanOutJob, FanOutMode, FromParent, ToParent } from './fan-out-child.js'

export interface FanOutRun {
  temp: TempDirs
  mode: FanOutMode
  replicas: number
  changes: number
  txSize: number
  store: SourceStore
  feedUrl: string
  natsUrl: string
  amqpUrl: string
  signal: AbortSignal
}

export interface FanOutResult {
  ms: number
  /** Of which the owner's commits (raw: the publishing) took this long. */
  writeMs: number
  /**
   * CPU time of this process (owner, feed server, relay; raw: the publisher) meanwhile: what the
   * fan-out costs the source's side, which a broker takes off it.
   */
  sourceCpuMs: number
  /** Changes delivered (and applied, for replicas) per second, summed over the consumers. */
  rate: number
}

const CHILD = fileURLToPath(new URL(`./fan-out-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))
let runs = 0

const data = (i: number): Json => ({ name: `Customer ${i}`, email: `c${i}@example.com`, tier: i % 3 })

export async function measureFanOut(run: FanOutRun): Promise<FanOutResult> {
  const prefix = `tmbench${process.pid}x${runs++}`
  const feed = `fan-${run.mode}-${run.replicas}`
  const cleanup: Array<() => Promise<unknown>> = []
  try {
    let startWork: () => Promise<number>
    const job: FanOutJob = { mode: run.mode, replicas: run.replicas, feedUrl: run.feedUrl, feed, natsUrl: run.natsUrl, amqpUrl: run.amqpUrl, prefix }
    if (run.mode.startsWith('raw-')) {
      const messages = rawMessages(feed, run.changes, run.txSize)
      if (run.mode === 'raw-nats') {
        const nc = await natsConnect({ servers: run.natsUrl })
        cleanup.push(() => nc.close())
        const jsm = await jetstreamManager(nc)
        job.stream = `${prefix}_raw`
        job.subject = `${prefix}.raw`
        await jsm.streams.add({ name: job.stream, subjects: [job.subject] })
        cleanup.unshift(() => jsm.streams.delete(job.stream as string))
        const js = jetstream(nc)
        startWork = async () => {
          let inFlight: Array<Promise<unknown>> = []
          for (const m of messages) {
            inFlight.push(js.publish(job.subject as string, m))
            if (inFlight.length >= 64) {
              await Promise.all(inFlight)
              inFlight = []
            }
          }
          await Promise.all(inFlight)
          return messages.length
        }
      } else {
        const model = await amqpConnect(run.amqpUrl)
        cleanup.push(() => model.close())
        const ch = await model.createConfirmChannel()
        job.exchange = `${prefix}.raw`
        await ch.assertExchange(job.exchange, 'topic', { durable: true })
        cleanup.unshift(() => ch.deleteExchange(job.exchange as string))
        startWork = async () => {
          for (const m of messages) {
            if (!ch.publish(job.exchange as string, 'raw', m, { persistent: true })) await new Promise((r) => ch.once('drain', r))
          }
          await ch.waitForConfirms()
          return messages.length
        }
      }
    } else {
      await run.store.ensureFeed(feed)
      if (run.mode !== 'http') {
        const sink = run.mode === 'nats' ? new NatsSink({ servers: run.natsUrl, prefix }) : new AmqpSink({ url: run.amqpUrl, prefix })
        const relay = createRelay({ source: new LocalFeedSource(run.store), feed, sink })
        const relaying = relay.run()
        cleanup.unshift(() => relay.stop().then(() => relaying))
        while (!relay.status().connected) await new Promise((r) => setTimeout(r, 10))
        cleanup.push(() => dropBrokerState(run, feed, prefix))
      }
      startWork = async () => {
        let last = 0
        for (let written = 0; written < run.changes; written += run.txSize) {
          const ops = Array.from({ length: Math.min(run.txSize, run.changes - written) }, (_, i) => {
            const n = written + i
            return { op: 'upsert' as const, key: `c${n % 10_000}`, data: data(n) }
          })
          const seqs = await run.store.write(feed, ops)
          last = seqs[seqs.length - 1] as number
        }
        return last
      }
    }
    let child: ChildProcess | undefined
    let resolveReady: () => void = () => {}
    let resolveDone: (m: ToParent & { done: true }) => void = () => {}
    let reject: (e: Error) => void = () => {}
    const ready = new Promise<void>((res, rej) => ((resolveReady = res), (reject = rej)))
    const done = new Promise<ToParent & { done: true }>((res, rej) => {
      resolveDone = res
      const prev = reject
      reject = (e) => (prev(e), rej(e))
    })
    done.catch(() => {})
    ready.catch(() => {})
    const exited = runNodeChild(run.temp, {
      args: [CHILD, JSON.stringify(job)],
      ipc: true,
      timeoutMs: 15 * 60_000,
      onStart: (c) => {
        child = c
        c.on('message', (m: ToParent) => {
          if ('ready' in m) resolveReady()
          else if ('done' in m) resolveDone(m)
          else reject(new Error(`fan-out child: ${m.error}`))
        })
        c.on('exit', (code) => reject(new Error(`fan-out child exited with ${code} before it was done`)))
      },
    })
    await ready
    run.signal.throwIfAborted()
    const started = nowMs()
    const cpuBefore = process.cpuUsage()
    const target = await startWork()
    const writeMs = nowMs() - started
    child?.send({ target } satisfies FromParent)
    await done
    const ms = nowMs() - started
    const cpu = process.cpuUsage(cpuBefore)
    const result = await exited
    if (result.code !== 0) throw new Error(`fan-out child exited with ${result.code}: ${result.stderr.slice(-2000)}`)
    return { ms, writeMs, sourceCpuMs: (cpu.user + cpu.system) / 1000, rate: (run.replicas * run.changes) / (ms / 1000) }
  } finally {
    for (const step of cleanup) await step().catch(() => {})
  }
}

/** The messages a relay would publish for `changes` changes in transactions of `txSize`. */
function rawMessages(feed: string, changes: number, txSize: number): Buffer[] {
  const all: Change[] = []
  for (let seq = 1; seq <= changes; seq++) {
    const tx = Math.min(changes, Math.ceil(seq / txSize) * txSize)
    all.push({ seq, key: `c${(seq - 1) % 10_000}`, op: 'upsert', data: data(seq - 1), tx, ts: Date.now() })
  }
  return splitIntoBatches(feed, 'raw', all, MESSAGE_DEFAULTS.maxChanges, MESSAGE_DEFAULTS.maxBytes).map((b) => encodeBatch(b).body)
}

async function dropBrokerState(run: FanOutRun, feed: string, prefix: string): Promise<void> {
  if (run.mode === 'nats') {
    const nc = await natsConnect({ servers: run.natsUrl })
    await (await jetstreamManager(nc)).streams.delete(streamName(feed, prefix)).catch(() => {})
    await nc.close()
  } else if (run.mode === 'amqp') {
    const model = await amqpConnect(run.amqpUrl)
    const ch = await model.createChannel()
    ch.on('error', () => {})
    for (let i = 0; i < run.replicas; i++) await ch.deleteQueue(replicaQueueName(feed, `r${i}`, prefix)).catch(() => {})
    await ch.deleteQueue(relayQueueName(feed, 'position', prefix)).catch(() => {})
    await ch.deleteExchange(exchangeName(feed, prefix)).catch(() => {})
    await model.close()
  }
}
