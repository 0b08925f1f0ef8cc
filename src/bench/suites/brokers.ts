/**
 * Suite `brokers`: fan-out of a feed's changes to 1, 10 and 50 replicas via NATS JetStream, via
 * RabbitMQ and via HTTP long-poll against one feed server, side by side in the same run, next to
 * each broker's raw publish+consume rate of the same messages with no tidemark (the ceiling).
 * docs/bench.md ("Brokers") says how each figure is measured.
 *
 * Brokers: TIDEMARK_BENCH_NATS_URL / TIDEMARK_BENCH_AMQP_URL, else the local ones.
 */
import { join } from 'node:path'
import { createFeedServer } from '../../server/feed-server.js'
import { SqliteSourceStore } from '../../store/sqlite/sqlite-source-store.js'
import { measureFanOut, type FanOutResult } from '../brokers/fan-out.js'
import type { FanOutMode } from '../brokers/fan-out-child.js'
import { atLeast, median, TempDirs } from '../harness.js'
import type { Suite } from '../suite.js'

interface Sizes {
  changes: number
  txSize: number
  replicas: number[]
  rounds: number
}

// 200,000 changes to 50 replicas is 10 million applies per transport: too much for the 2-core
// machines this runs on, so the full run fans out 20,000 (docs/bench.md).
const FULL: Sizes = { changes: 20_000, txSize: 100, replicas: [1, 10, 50], rounds: 1 }
const QUICK: Sizes = { changes: 2000, txSize: 100, replicas: [1, 5], rounds: 1 }

const n = (x: number): string => x.toLocaleString('en-US')

export const brokers: Suite = {
  name: 'brokers',
  description: 'fan-out to 1/10/50 replicas via NATS JetStream, RabbitMQ and HTTP long-poll, next to each broker\'s raw rate',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    const natsUrl = process.env.TIDEMARK_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222'
    const amqpUrl = process.env.TIDEMARK_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
    const temp = new TempDirs()
    const store = SqliteSourceStore.open(join(ctx.tmpDir(), 'source.db'))
    const server = await createFeedServer({ store, maintainEveryMs: 0 })
    try {
      const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
      for (const replicas of sizes.replicas) {
        const results = new Map<FanOutMode, FanOutResult[]>()
        for (let round = 0; round < sizes.rounds; round++) {
          for (const mode of ['http', 'nats', 'amqp', 'raw-nats', 'raw-amqp'] as const) {
            ctx.signal.throwIfAborted()
            const r = await measureFanOut({ temp, mode, replicas, changes: sizes.changes, txSize: sizes.txSize, store, feedUrl: url, natsUrl, amqpUrl, signal: ctx.signal })
            ctx.log(`${mode} to ${replicas}: ${n(Math.round(r.rate))} changes/s (${(r.ms / 1000).toFixed(1)} s, of which writing ${(r.writeMs / 1000).toFixed(1)} s; source side CPU ${(r.sourceCpuMs / 1000).toFixed(1)} s)`)
            results.set(mode, [...(results.get(mode) ?? []), r])
          }
        }
        const rate = (mode: FanOutMode): number => median((results.get(mode) ?? []).map((r) => r.rate))
        const what = `${n(sizes.changes)} changes to ${replicas} replica${replicas === 1 ? '' : 's'}`
        const big = replicas === Math.max(...sizes.replicas)
        ctx.report({
          figure: `fan-out via HTTP long-poll, ${what}`,
          value: rate('http'),
          unit: 'changes/s',
          note: 'aggregate: changes applied per second summed over the replicas; one feed server',
        })
        const cpu = (mode: FanOutMode): number => median((results.get(mode) ?? []).map((r) => r.sourceCpuMs))
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
        }
      }
    } finally {
      await server.close()
      await store.close()
      temp.cleanup()
    }
  },
}
