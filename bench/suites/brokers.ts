/**
 * Suite `brokers`: fan-out of a feed's changes to 1, 10 and 50 replicas via NATS JetStream, via
 * RabbitMQ and via HTTP long-poll against one feed server, side by side in the same run, next to
 * each broker's raw publish+consume rate of the same messages with no tidemark (the ceiling), and
 * what one core can apply with no transport at all (the bound this machine puts on any transport).
 * docs/bench.md ("Brokers") says how each figure is measured.
 *
 * Brokers: TIDEMARK_BENCH_NATS_URL / TIDEMARK_BENCH_AMQP_URL, else the local ones.
 * TIDEMARK_BENCH_FAN_OUT_ROUNDS: rounds of the fan-out (default 1; medians over them).
 */
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { ApplyOnlyJob, ApplyOnlyResult } from '../brokers/apply-only-child.js'
import { measureFanOut, type FanOutResult } from '../brokers/fan-out.js'
import type { FanOutMode } from '../brokers/fan-out-child.js'
import { atLeast, median, runNodeChild, TempDirs } from '../harness.js'
import type { Suite } from '../suite.js'

interface Sizes {
  changes: number
  txSize: number
  replicas: number[]
  /** Replicas per process: 1, as deployed (50 node processes fit 24 GB; docs/bench.md). */
  perProcess: number
  rounds: number
  applyOnlyRounds: number
}

const FULL: Sizes = { changes: 200_000, txSize: 100, replicas: [1, 10, 50], perProcess: 1, rounds: 1, applyOnlyRounds: 3 }
const QUICK: Sizes = { changes: 2000, txSize: 100, replicas: [1, 3], perProcess: 1, rounds: 1, applyOnlyRounds: 1 }

const APPLY_ONLY = fileURLToPath(new URL(`../brokers/apply-only-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))
const n = (x: number): string => x.toLocaleString('en-US')
const s = (ms: number): string => (ms / 1000).toFixed(1)

export const brokers: Suite = {
  name: 'brokers',
  description: 'fan-out to 1/10/50 replicas via NATS JetStream, RabbitMQ and HTTP long-poll, next to each broker\'s raw rate and to what one core applies with no transport',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : { ...FULL, rounds: Number(process.env.TIDEMARK_BENCH_FAN_OUT_ROUNDS ?? FULL.rounds) }
    const natsUrl = process.env.TIDEMARK_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222'
    const amqpUrl = process.env.TIDEMARK_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
    const cores = cpus().length
    const temp = new TempDirs()
    const store = SqliteSourceStore.open(join(ctx.tmpDir(), 'source.db'))
    const server = await createFeedServer({ store, maintainEveryMs: 0 })
    try {
      // What one core applies with no transport (and SQLite alone), in a process of its own.
      const applyOnly = async (bare: boolean): Promise<number> => {
        const rates: number[] = []
        for (let round = 0; round < sizes.applyOnlyRounds; round++) {
          const job: ApplyOnlyJob = { changes: sizes.changes, txSize: sizes.txSize, dir: temp.make('tidemark-bench-apply-only-'), bare }
          const child = await runNodeChild(temp, { args: [APPLY_ONLY, JSON.stringify(job)], timeoutMs: 10 * 60_000 })
          if (child.code !== 0) throw new Error(`apply-only child exited with ${child.code}: ${child.stderr.slice(-2000)}`)
          const r = JSON.parse(child.stdout) as ApplyOnlyResult
          rates.push(r.changes / (r.cpuMs / 1000))
          ctx.log(`${bare ? 'bare SQLite upserts' : 'apply only'}: ${n(Math.round(r.changes / (r.cpuMs / 1000)))} changes per CPU second (${s(r.ms)} s wall, ${s(r.cpuMs)} s CPU)`)
        }
        return median(rates)
      }
      const perCore = await applyOnly(false)
      const barePerCore = await applyOnly(true)
      ctx.report({
        figure: `apply only, no transport, ${n(sizes.changes)} changes (per core)`,
        value: perCore,
        unit: 'changes/s',
        baseline: { name: 'bare SQLite upserts of the same rows', value: barePerCore },
        note: 'changes a replica store applies per CPU second from the relay\'s messages in memory: decode, planDelivery, apply (one transaction a message); bare: the rows upserted into a plain table',
      })

      const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
      for (const replicas of sizes.replicas) {
        const results = new Map<FanOutMode, FanOutResult[]>()
        for (let round = 0; round < sizes.rounds; round++) {
          for (const mode of ['http', 'nats', 'amqp', 'raw-nats', 'raw-amqp'] as const) {
            ctx.signal.throwIfAborted()
            const r = await measureFanOut({ temp, mode, replicas, perProcess: sizes.perProcess, changes: sizes.changes, txSize: sizes.txSize, store, feedUrl: url, natsUrl, amqpUrl, signal: ctx.signal })
            ctx.log(
              `${mode} to ${replicas} (${r.processes} processes): ${n(Math.round(r.rate))} changes/s (${s(r.ms)} s, of which writing ${s(r.writeMs)} s; ` +
                `CPU: source side ${s(r.sourceCpuMs)} s, consumers ${s(r.consumerCpuMs)} s, broker ${r.brokerCpuMs === null ? '-' : s(r.brokerCpuMs)} s)`,
            )
            results.set(mode, [...(results.get(mode) ?? []), r])
          }
        }
        const med = (mode: FanOutMode, f: (r: FanOutResult) => number): number => median((results.get(mode) ?? []).map(f))
        const rate = (mode: FanOutMode): number => med(mode, (r) => r.rate)
        const cpu = (mode: FanOutMode): number => med(mode, (r) => r.sourceCpuMs)
        // Every party's CPU per change applied (or counted): what the machine pays for each.
        const perChange = (mode: FanOutMode): number => med(mode, (r) => ((r.sourceCpuMs + r.consumerCpuMs + (r.brokerCpuMs ?? 0)) * 1000) / (replicas * sizes.changes))
        const what = `${n(sizes.changes)} changes to ${replicas} replica${replicas === 1 ? '' : 's'}`
        const big = replicas === Math.max(...sizes.replicas)
        ctx.report({
          figure: `fan-out via HTTP long-poll, ${what}`,
          value: rate('http'),
          unit: 'changes/s',
          note: 'aggregate: changes applied per second summed over the replicas; one feed server',
        })
        for (const [mode, name] of [['nats', 'NATS JetStream'], ['amqp', 'RabbitMQ']] as const) {
          ctx.report({
            figure: `source-side CPU, ${name}, ${what}`,
            value: cpu(mode),
            unit: 'ms',
            baseline: { name: 'HTTP long-poll', value: cpu('http') },
            note: 'CPU time of the owner\'s process (owner writes + relay; HTTP: owner writes + feed server answering every replica) from the first commit to the last apply',
          })
        }
        for (const [mode, name, raw] of [['nats', 'NATS JetStream', 'raw-nats'], ['amqp', 'RabbitMQ', 'raw-amqp']] as const) {
          ctx.report({
            figure: `fan-out via ${name}, ${what}`,
            value: rate(mode),
            unit: 'changes/s',
            baseline: { name: 'HTTP long-poll', value: rate('http') },
            ...(big ? { target: atLeast(3, '≥ 3×') } : {}),
            note: 'aggregate changes applied per second; relay in the owner\'s process, replicas with the log behind the broker',
          })
          ctx.report({
            figure: `${name} vs its raw rate, ${what}`,
            value: rate(mode),
            unit: 'changes/s',
            baseline: { name: `raw publish+consume, ${replicas} consumers`, value: rate(raw) },
            ...(big ? { target: atLeast(0.5, '≥ 0.5×') } : {}),
            note: 'raw: the same messages published and consumed (counted, acked) with no tidemark, in the same process layout',
          })
          ctx.report({
            figure: `machine CPU per change applied, ${name}, ${what}`,
            value: perChange(mode),
            unit: 'µs',
            baseline: { name: 'HTTP long-poll', value: perChange('http') },
            note: 'CPU of the owner\'s process, the replicas\' processes and the broker\'s server (on this machine), per change applied by a replica',
          })
        }
        if (big) {
          // The bound: at most `cores` CPU seconds a second, each applying `perCore` changes with no transport at all.
          for (const [raw, name] of [['raw-nats', 'NATS JetStream'], ['raw-amqp', 'RabbitMQ']] as const) {
            ctx.report({
              figure: `${cores} cores × apply only, vs ${name}'s raw rate to ${replicas}`,
              value: cores * perCore,
              unit: 'changes/s',
              baseline: { name: `raw publish+consume, ${replicas} consumers`, value: rate(raw) },
              note: 'the most any transport can apply on this machine (every core applying, nothing else running): below 0.5× the raw rate, that target cannot be met here',
            })
          }
        }
      }
    } finally {
      await server.close()
      await store.close()
      temp.cleanup()
    }
  },
}
