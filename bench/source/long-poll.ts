/**
 * Figure 3 of the source suite: how soon a waiting long-poll answers after a commit.
 *
 * A client long-polls `changes?after=<head>&wait=10000`; once the server is waiting (it has called
 * `store.waitForChanges`, which the benchmark observes through a wrapper around the store), a
 * writer commits one change — from this process on its own connection, or from another process —
 * and the time from the end of the commit to the last byte of the response is recorded.
 *
 * The baseline is the same round trip without waiting: commit, then a plain `changes` request
 * right away. The ratio is what the wake-up adds over one request.
 */
import Database from 'better-sqlite3'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import type { SourceStore } from '../../src/store/store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { nowMs, prng, runNodeChild, type TempDirs } from '../harness.js'
import type { ChangesClient } from './changes-client.js'
import { makeCustomer, ownerPragmas } from './customers.js'

/** A store that tells when somebody starts waiting on it. Everything else goes straight through. */
export class WaitSignal {
  private waiters: Array<() => void> = []
  readonly store: SourceStore

  constructor(target: SourceStore) {
    this.store = new Proxy(target, {
      get: (t, prop) => {
        if (prop === 'waitForChanges') {
          return (...args: Parameters<SourceStore['waitForChanges']>) => {
            const waiting = t.waitForChanges(...args)
            for (const wake of this.waiters.splice(0)) wake()
            return waiting
          }
        }
        const value = Reflect.get(t, prop, t) as unknown
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value
      },
    })
  }

  /** Resolves when the next `waitForChanges` has started, or after `timeoutMs` (should the server wait some other way). */
  next(timeoutMs = 200): Promise<void> {
    return Promise.race([new Promise<void>((resolve) => this.waiters.push(resolve)), delay(timeoutMs)])
  }
}

export interface LatencySamples {
  /** Commit in this process, on its own connection → long-poll answered, ms. */
  longPoll: number[]
  /** Commit in another process → long-poll answered, ms. */
  childLongPoll: number[]
  /** Commit in this process → a plain request sent after it answered, ms. */
  plain: number[]
}

export interface LongPollOptions {
  path: string
  feed: string
  client: ChangesClient
  waits: WaitSignal
  temp: TempDirs
  commits: number
  signal: AbortSignal
}

export async function measureLongPoll(options: LongPollOptions): Promise<LatencySamples> {
  const { client, feed, waits } = options
  const db = new Database(options.path)
  ownerPragmas(db)
  const source = new SqliteSource(db)
  const writer = source.feed(feed)
  const rand = prng(3)
  let id = 0
  const row = () => {
    id++
    return { key: String(id), data: makeCustomer(id, rand) }
  }

  let child: ChildProcess | undefined
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const childRun = runNodeChild(options.temp, {
    args: [fileURLToPath(new URL(`./commit-child${ext}`, import.meta.url)), options.path, feed],
    ipc: true,
    onStart: (c) => (child = c),
  })
  const exited = childRun.then((r) => {
    throw new Error(`the writer process exited (code ${r.code}): ${r.stderr.trim()}`)
  })
  exited.catch(() => {})
  const fromChild = (): Promise<{ seq: number; committedAt: number }> =>
    Promise.race([once(child as ChildProcess, 'message').then(([m]) => m as { seq: number; committedAt: number }), exited])
  const samples: LatencySamples = { longPoll: [], childLongPoll: [], plain: [] }
  try {
    await fromChild()
    const r0 = row()
    let head = writer.put(r0.key, r0.data)
    for (let i = 0; i < options.commits; i++) {
      options.signal.throwIfAborted()

      // Long-poll, woken by a commit of this process.
      let waiting = waits.next()
      let answer = client.changes(feed, head, { wait: 10_000 })
      await waiting
      const r1 = row()
      head = writer.put(r1.key, r1.data)
      let committedAt = nowMs()
      let res = await answer
      if (res.last !== head) throw new Error(`long-poll answered up to ${res.last}, the commit was ${head}`)
      samples.longPoll.push(res.receivedAt - committedAt)

      // The same commit and a plain request right after it.
      const r2 = row()
      head = writer.put(r2.key, r2.data)
      committedAt = nowMs()
      res = await client.changes(feed, head - 1)
      if (res.last !== head) throw new Error(`plain request answered up to ${res.last}, the commit was ${head}`)
      samples.plain.push(res.receivedAt - committedAt)

      // Long-poll, woken by a commit of another process.
      waiting = waits.next()
      answer = client.changes(feed, head, { wait: 10_000 })
      await waiting
      const committed = fromChild()
      child?.send(row())
      const [c, r3] = await Promise.all([committed, answer])
      head = c.seq
      if (r3.last !== head) throw new Error(`long-poll answered up to ${r3.last}, the other process committed ${head}`)
      samples.childLongPoll.push(r3.receivedAt - c.committedAt)
    }
  } finally {
    child?.disconnect()
    await childRun
    source.close()
    db.close()
  }
  return samples
}
