/**
 * One fan-out measurement: the owner, the feed server and the relay run in this process, as they
 * would on the owner's side; the consumers run in child processes (fan-out-child.ts), `perProcess`
 * to a process — one each by default, as replicas are deployed. Timed from the owner's first
 * commit (raw: the first publish) until every consumer has everything.
 *
 * Besides the time, it measures the CPU every party spent meanwhile: this process (the source's
 * side), the children (the replicas), and — when the broker runs on this machine — the broker's
 * server process, read from /proc. Their sum per change applied is what the layout costs the
 * machine, which bounds the aggregate rate any number of replicas can reach on its cores.
 */
import type { ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { processCpuMs } from '../process-cpu.js'
import { fileURLToPath } from 'node:url'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import { connect as amqpConnect } from 'amqplib'
import { createRelay } from '../../src/relay/relay.js'
import type { SourceStore } from '../../src/store/store.js'
import { relayQueueName, replicaQueueName, exchangeName } from '../../src/transport/amqp/amqp-settings.js'
import { AmqpSink } from '../../src/transport/amqp/amqp-sink.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { NatsSink } from '../../src/transport/nats/nats-sink.js'
import { streamName } from '../../src/transport/nats/nats-settings.js'
import { nowMs, runNodeChild, type ChildRun, type TempDirs } from '../harness.js'
import type { FanOutJob, FanOutMode, FromParent, ToParent } from './fan-out-child.js'
import { fanOutMessages, fanOutTransactions } from './fan-out-messages.js'

export interface FanOutRun {
  temp: TempDirs
  mode: FanOutMode
  replicas: number
  /** Consumers per child process (1: a process each). */
  perProcess: number
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
  /** CPU time of the consumer processes, from the owner's first commit until each was done. */
  consumerCpuMs: number
  /** CPU time of the broker's server process meanwhile (null: not on this machine, or HTTP). */
  brokerCpuMs: number | null
  /** Changes delivered (and applied, for replicas) per second, summed over the consumers. */
  rate: number
  processes: number
}

const CHILD = fileURLToPath(new URL(`./fan-out-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))
// TIDEMARK_BENCH_CHILD_FLAGS: node flags for the consumer processes, e.g. `--cpu-prof --cpu-prof-dir=prof` to profile a replica.
const CHILD_FLAGS = (process.env.TIDEMARK_BENCH_CHILD_FLAGS ?? '').split(' ').filter((f) => f !== '')
let runs = 0

export async function measureFanOut(run: FanOutRun): Promise<FanOutResult> {
  const prefix = `tmbench${process.pid}x${runs++}`
  const feed = `fan-${run.mode}-${run.replicas}-${runs}`
  const cleanup: Array<() => Promise<unknown>> = []
  const children: ChildProcess[] = []
  try {
    let startWork: () => Promise<number>
    const base: Omit<FanOutJob, 'from' | 'count' | 'dir'> = { mode: run.mode, feedUrl: run.feedUrl, feed, natsUrl: run.natsUrl, amqpUrl: run.amqpUrl, prefix }
    if (run.mode.startsWith('raw-')) {
      const messages = fanOutMessages(feed, 'raw', run.changes, run.txSize).map((m) => m.body)
      if (run.mode === 'raw-nats') {
        const nc = await natsConnect({ servers: run.natsUrl })
        cleanup.push(() => nc.close())
        const jsm = await jetstreamManager(nc)
        base.stream = `${prefix}_raw`
        base.subject = `${prefix}.raw`
        await jsm.streams.add({ name: base.stream, subjects: [base.subject] })
        cleanup.unshift(() => jsm.streams.delete(base.stream as string))
        const js = jetstream(nc)
        startWork = async () => {
          let inFlight: Array<Promise<unknown>> = []
          for (const m of messages) {
            inFlight.push(js.publish(base.subject as string, m))
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
        base.exchange = `${prefix}.raw`
        await ch.assertExchange(base.exchange, 'topic', { durable: true })
        cleanup.unshift(() => ch.deleteExchange(base.exchange as string))
        startWork = async () => {
          for (const m of messages) {
            if (!ch.publish(base.exchange as string, 'raw', m, { persistent: true })) await new Promise((r) => ch.once('drain', r))
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
        for (const ops of fanOutTransactions(run.changes, run.txSize)) {
          const seqs = await run.store.write(feed, ops)
          last = seqs[seqs.length - 1] as number
        }
        return last
      }
    }

    // The consumers: `perProcess` to a child, each child saying ready, then done with its CPU time.
    const dir = run.temp.make('tidemark-bench-fan-out-')
    const ready: Array<Promise<void>> = []
    const done: Array<Promise<{ cpuMs: number }>> = []
    const exits: Array<Promise<ChildRun>> = []
    let failed: (e: Error) => void = () => {}
    const failure = new Promise<never>((_, reject) => (failed = reject))
    failure.catch(() => {})
    for (let from = 0; from < run.replicas; from += run.perProcess) {
      const job: FanOutJob = { ...base, from, count: Math.min(run.perProcess, run.replicas - from), dir }
      let isReady: () => void = () => {}
      let isDone: (m: { cpuMs: number }) => void = () => {}
      ready.push(new Promise<void>((resolve) => (isReady = resolve)))
      done.push(new Promise<{ cpuMs: number }>((resolve) => (isDone = resolve)))
      let finished = false
      exits.push(
        runNodeChild(run.temp, {
          args: [...CHILD_FLAGS, CHILD, JSON.stringify(job)],
          ipc: true,
          timeoutMs: 20 * 60_000,
          onStart: (c) => {
            children.push(c)
            c.on('message', (m: ToParent) => {
              if ('ready' in m) isReady()
              else if ('done' in m) {
                finished = true
                isDone(m)
              } else failed(new Error(`fan-out child ${from}: ${m.error}`))
            })
            c.on('exit', (code) => {
              if (!finished) failed(new Error(`fan-out child ${from} exited with ${code} before it was done`))
            })
          },
        }),
      )
    }
    await Promise.race([Promise.all(ready), failure])
    run.signal.throwIfAborted()
    const broker = brokerProcess(run)
    const brokerBefore = broker === undefined ? undefined : processCpuMs(broker)
    for (const c of children) c.send({ start: true } satisfies FromParent)
    const started = nowMs()
    const cpuBefore = process.cpuUsage()
    const target = await startWork()
    const writeMs = nowMs() - started
    for (const c of children) c.send({ target } satisfies FromParent)
    const reports = await Promise.race([Promise.all(done), failure])
    const ms = nowMs() - started
    const cpu = process.cpuUsage(cpuBefore)
    const brokerAfter = broker === undefined ? undefined : processCpuMs(broker)
    for (const result of await Promise.all(exits)) {
      if (result.code !== 0) throw new Error(`fan-out child exited with ${result.code}: ${result.stderr.slice(-2000)}`)
    }
    return {
      ms,
      writeMs,
      sourceCpuMs: (cpu.user + cpu.system) / 1000,
      consumerCpuMs: reports.reduce((sum, r) => sum + r.cpuMs, 0),
      brokerCpuMs: brokerBefore !== undefined && brokerAfter !== undefined ? brokerAfter - brokerBefore : null,
      rate: (run.replicas * run.changes) / (ms / 1000),
      processes: children.length,
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const step of cleanup) await step().catch(() => {})
  }
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

/**
 * The pid of the broker's server when it runs on this machine (its URL names 127.0.0.1 or
 * localhost, and one process of that name is found in /proc): nats-server, or RabbitMQ's Erlang VM.
 */
function brokerProcess(run: FanOutRun): number | undefined {
  if (run.mode === 'http') return undefined
  const nats = run.mode.endsWith('nats')
  const host = new URL(nats ? run.natsUrl : run.amqpUrl).hostname
  if (host !== '127.0.0.1' && host !== 'localhost') return undefined
  const name = nats ? 'nats-server' : 'beam.smp'
  let found: number[] = []
  try {
    found = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === name
        } catch {
          return false
        }
      })
      .map(Number)
  } catch {
    return undefined
  }
  return found.length === 1 ? found[0] : undefined
}

