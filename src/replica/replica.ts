import {
  ApplyFailedError,
  BadRequestError,
  ConflictError,
  EpochChangedError,
  HistoryRewoundError,
  LogTruncatedError,
  NotAStoreError,
  ProtocolError,
  TidemarkError,
  asTidemarkError,
} from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import type { Seq } from '../protocol/types.js'
import type { ApplyHook, BootstrapProgress, ReplicaState, ReplicaStore } from '../store/replica-store.js'
import { silentLogger, type Logger } from '../store/store.js'
import { Backoff } from '../transport/backoff.js'
import { snapshotPages, type FeedSource } from '../transport/feed-source.js'
import { LongPollTransport } from '../transport/http/long-poll-transport.js'
import type { ChangeTransport } from '../transport/transport.js'
import { reconcile } from '../reconcile/reconcile.js'
import type { ReconcileMode, ReconcileRun } from '../reconcile/run.js'
import { planDelivery } from './delivery-plan.js'
import { PhaseMachine, type EventKind, type Phase, type PhaseChange } from './phase.js'
import { ReconcileScheduler, type DueRun, type ReconcileSchedule } from './reconcile-schedule.js'
import { LifeCycle, systemTimers, type Timers } from '../util/life-cycle.js'
import { PositionWaiters } from '../util/position-waiters.js'

export type { ReconcileSchedule } from './reconcile-schedule.js'

export interface ReplicaOptions<Tx> {
  /** Where the feed comes from: `HttpFeedSource` for a feed server, `LocalFeedSource` in-process. */
  source: FeedSource
  feed: string
  store: ReplicaStore<Tx>
  /** The replica's name in its store; defaults to the feed's name. */
  name?: string
  /** Projection hook, run inside the apply transaction for every change that takes effect. */
  apply?: ApplyHook<Tx>
  /** How pushed changes arrive; defaults to HTTP long-poll over `source`. */
  transport?: ChangeTransport
  logger?: Logger
  /** Rows per snapshot request while bootstrapping. */
  snapshotChunk?: number
  /** Changes per log request while bootstrapping or healing. */
  pullLimit?: number
  /** How often to compare the checkpoint with the source's head (catches a lost last message). */
  headCheckMs?: number
  /** Claim lease length; renewed at a third of it. */
  leaseMs?: number
  /** Take over a replica bound to another source or feed (it re-bootstraps). */
  force?: boolean
  backoff?: Backoff
  /** A live replica that falls this many changes behind the head goes back to catching-up. */
  catchUpThreshold?: number
  onPhase?: (change: PhaseChange) => void
  now?: () => number
  /** The timers for leases, head checks, schedules and request polls (tests drive them). */
  timers?: Timers
  reconcile?: ReconcileSchedule
}

export interface ReplicaStatus {
  name: string
  feed: string
  phase: Phase
  /** False while the source cannot be reached (the replica retries with backoff). */
  connected: boolean
  epoch: string | null
  checkpoint: Seq
  sourceHead: Seq
  bootstrap: BootstrapProgress | null
  lastError: string | null
  history: PhaseChange[]
  /** The last reconciliation run of this process, if any (all runs: `ReplicaStore.runs`). */
  lastRun: ReconcileRun | null
}

/** Raised inside follow() to leave it for a reconciliation run that is due. */
class ReconcileWake extends Error {}

/** Raised inside follow() by the head check to make it pull from the log and resubscribe. */
class StallError extends Error {}

export class Replica<Tx = unknown> {
  readonly name: string
  readonly feed: string
  private readonly options: ReplicaOptions<Tx>
  private readonly store: ReplicaStore<Tx>
  private readonly source: FeedSource
  private readonly transport: ChangeTransport
  private readonly logger: Logger
  private readonly backoff: Backoff
  private readonly now: () => number
  private readonly machine: PhaseMachine
  private readonly timers: Timers
  private readonly life: LifeCycle
  private readonly runs: ReconcileScheduler
  private readonly waiters = new PositionWaiters()
  private epoch: string | null = null
  private checkpoint: Seq = 0
  private sourceHead: Seq = 0
  private connected = false
  private lastError: string | null = null
  private bootstrapProgress: BootstrapProgress | null = null
  private failure: unknown
  private lastRun: ReconcileRun | null = null

  constructor(options: ReplicaOptions<Tx>) {
    // Past the protocol's bounds every request is refused (400) and retried for ever: say so now.
    checkLimit('snapshotChunk', options.snapshotChunk, LIMITS.snapshotMax)
    checkLimit('pullLimit', options.pullLimit, LIMITS.changesMax)
    this.options = options
    this.name = options.name ?? options.feed
    this.feed = options.feed
    this.store = options.store
    this.source = options.source
    this.transport = options.transport ?? new LongPollTransport(options.source)
    this.logger = options.logger ?? silentLogger
    this.backoff = options.backoff ?? new Backoff()
    this.now = options.now ?? Date.now
    this.timers = options.timers ?? systemTimers
    this.life = new LifeCycle(`replica ${this.name}`)
    this.runs = new ReconcileScheduler(options.reconcile, this.now, this.timers)
    this.machine = new PhaseMachine((change) => {
      this.logger.info({ replica: this.name, from: change.from, to: change.to }, `replica ${this.name}: ${change.from} → ${change.to} (${change.reason})`)
      options.onPhase?.(change)
    }, this.now)
  }

  get phase(): Phase {
    return this.machine.phase
  }

  status(): ReplicaStatus {
    return {
      name: this.name,
      feed: this.feed,
      phase: this.machine.phase,
      connected: this.connected,
      epoch: this.epoch,
      checkpoint: this.checkpoint,
      sourceHead: this.sourceHead,
      bootstrap: this.bootstrapProgress,
      lastError: this.lastError,
      history: [...this.machine.history],
      lastRun: this.lastRun,
    }
  }

  /**
   * Runs until stopped (resolves) or failed (rejects): claims the replica in its store,
   * bootstraps when needed, then follows the feed. Transient failures are retried with capped,
   * jittered backoff; a failing hook or a lost claim stops it with the error.
   */
  run(signal?: AbortSignal): Promise<void> {
    return this.life.start(signal, (inner) => {
      this.machine.dispatch('restart', 'run() again')
      this.failure = undefined
      this.runs.start()
      return this.loop(inner)
    })
  }

  /** Stops at a transaction boundary; resolves when the replica has stopped. */
  stop(): Promise<void> {
    return this.life.stop()
  }

  /**
   * Compares the replica with its source now (and repairs drift in `repair` mode), as a phase of
   * the running replica: nothing is applied meanwhile. Resolves with the run's record.
   */
  reconcile(options: { mode?: ReconcileMode; deep?: boolean } = {}): Promise<ReconcileRun> {
    if (!this.life.running) throw new ConflictError(`replica ${this.name} is ${this.machine.phase}: run() it before reconciling`)
    return new Promise<ReconcileRun>((resolve, reject) => {
      this.runs.due({ trigger: 'demand', mode: options.mode ?? 'repair', deep: options.deep === true, resolve, reject })
    })
  }

  /**
   * Resolves when the checkpoint reaches `seq` (by default: the source's head, as soon as the source
   * answers). Waits through what the replica retries — a source that is down or not up yet, a
   * network blip — for as long as `signal` lets it (e.g. `AbortSignal.timeout(30_000)`); rejects when
   * the replica fails (on what retrying cannot fix: a refused token, an unknown feed, a failing hook)
   * or stops first, or with the signal's reason.
   */
  async caughtUp(seq?: Seq, signal?: AbortSignal): Promise<Seq> {
    signal?.throwIfAborted()
    const target = seq ?? (await this.sourceHeadWhenReachable(signal))
    if (this.checkpoint >= target && this.machine.phase !== 'bootstrapping' && this.epoch !== null) return this.checkpoint
    if (!this.life.running) {
      throw new ConflictError(`replica ${this.name} is ${this.machine.phase} at ${this.checkpoint}, short of ${target}: run() it first${this.lastError ? ` (last error: ${this.lastError})` : ''}`)
    }
    await this.waiters.wait(target, signal)
    return this.checkpoint
  }

  /**
   * The source's head, asked until the source answers: a start-up before the feed server is up is
   * normal. Stops with the replica (its error, when it failed) and on what retrying cannot fix.
   */
  private async sourceHeadWhenReachable(signal: AbortSignal | undefined): Promise<Seq> {
    const backoff = new Backoff({ baseMs: this.backoff.baseMs, capMs: Math.min(this.backoff.capMs, 2000) })
    for (;;) {
      try {
        return (await this.source.info(this.feed, signal)).head
      } catch (error) {
        signal?.throwIfAborted()
        if (isFinal(error)) throw error
        if (this.machine.phase === 'failed') throw this.failureReason(error)
        if (!this.life.running) {
          throw new ConflictError(`replica ${this.name} is ${this.machine.phase}: run() it first (the source did not answer: ${asTidemarkError(error).message})`, error)
        }
        await backoff.sleep(backoff.next(), signal).catch(() => {})
        signal?.throwIfAborted()
      }
    }
  }

  private failureReason(fallback: unknown): unknown {
    return this.failure ?? new TidemarkError(asTidemarkError(fallback).code, `replica ${this.name} failed: ${this.lastError ?? 'unknown error'}`)
  }

  private async loop(signal: AbortSignal): Promise<void> {
    let state: ReplicaState
    try {
      state = await this.store.claim(this.name, this.feed, this.source.description, {
        ...(this.options.force ? { force: true } : {}),
        ...(this.options.leaseMs ? { leaseMs: this.options.leaseMs } : {}),
      })
    } catch (error) {
      this.fail(error)
      throw error
    }
    this.adopt(state)
    const leaseMs = this.options.leaseMs ?? 15_000
    const renew = this.timers.setInterval(() => {
      this.store.renew(this.name).catch((error: unknown) => {
        this.failure = error
        this.life.abort(error)
      })
    }, Math.max(50, Math.floor(leaseMs / 3)))
    ;(renew as { unref?: () => void }).unref?.()
    try {
      while (!signal.aborted) {
        try {
          state = (await this.store.state(this.name)) as ReplicaState
          if (state.bootstrap || state.gen === 0) {
            await this.bootstrap(signal, state.bootstrap ? 'resuming the bootstrap' : 'no copy yet')
          } else {
            this.adopt(state)
            const due = this.runs.next()
            if (due !== undefined) {
              await this.runReconcile(due, signal)
              continue
            }
            this.machine.dispatch('copy-found', `from checkpoint ${state.seq}`)
            await this.follow(signal)
          }
        } catch (error) {
          if (signal.aborted) break
          await this.recover(error, signal)
        }
      }
      if (this.failure) throw this.failure
      this.machine.dispatch('stop', 'stop requested')
      this.waiters.rejectAll(new Error(`replica ${this.name} stopped`))
      this.runs.rejectAll(new Error(`replica ${this.name} stopped`))
    } catch (error) {
      this.fail(error)
      throw error
    } finally {
      this.timers.clearInterval(renew)
      await this.store.release(this.name).catch(() => {})
      this.connected = false
    }
  }

  /** The `reconciling` phase: one run, then back to following (or re-bootstrapping). */
  private async runReconcile(due: DueRun, signal: AbortSignal): Promise<void> {
    this.machine.dispatch('run-due', `${due.trigger}: ${due.mode}${due.deep ? ' (deep)' : ''}`)
    let run: ReconcileRun
    try {
      run = await reconcile({
        source: this.source,
        feed: this.feed,
        store: this.store,
        name: this.name,
        mode: due.mode,
        deep: due.deep,
        trigger: due.trigger,
        signal,
        now: this.now,
        ...(this.options.apply ? { hook: this.options.apply } : {}),
        ...(due.requestId !== undefined ? { requestId: due.requestId } : {}),
      })
    } catch (error) {
      due.reject?.(error)
      throw error
    }
    this.lastRun = run
    if (due.trigger === 'schedule') this.runs.planNext()
    const level = run.outcome === 'intact' ? 'info' : 'warn'
    this.logger[level](
      { replica: this.name, run: { outcome: run.outcome, drifted: run.drifted, repaired: run.repaired, lagging: run.lagging, cost: run.cost } },
      `replica ${this.name}: ${due.mode} (${due.trigger}) → ${run.outcome}` +
        (run.drifted > 0 ? `: ${run.drifted} drifted key(s), ${run.repaired} repaired` : '') +
        (run.error ? ` (${run.error})` : ''),
    )
    if (run.outcome === 'rebootstrap' && due.mode === 'repair') {
      due.resolve?.(run)
      await this.restartBootstrap(signal, 'history-rewound', run.error ?? 'reconciliation found the source rewound')
      return
    }
    this.adopt((await this.store.state(this.name)) as ReplicaState)
    this.machine.dispatch('run-ended', `${due.mode} ${run.outcome}`)
    due.resolve?.(run)
  }

  /** What an error means as an event (`classify`), and what the replica does about it. */
  private async recover(error: unknown, signal: AbortSignal): Promise<void> {
    const kind = classify(error)
    switch (kind) {
      case 'fatal':
        throw error
      case 'epoch-changed':
      case 'history-rewound': {
        const message = (error as Error).message
        this.logger.warn({ replica: this.name, err: message }, message)
        // A source whose history keeps moving under a bootstrap: start again, but not in a tight loop.
        if (this.machine.phase === 'bootstrapping') await this.backoff.sleep(this.backoff.next(), signal).catch(() => {})
        if (signal.aborted) return
        await this.restartBootstrap(signal, kind, message)
        return
      }
      case 'log-truncated': {
        const e = error as LogTruncatedError
        const behind = e.minSeq - 1 - e.after
        const message =
          `replica ${this.name} is ${behind} changes behind the oldest change feed "${this.feed}" keeps (minSeq ${e.minSeq}, checkpoint ${e.after}): ` +
          `it will re-bootstrap; raise the feed's retention (e.g. \`tidemark retention <db> ${this.feed} --changes ${Math.max(behind * 2, 1000)}\`) to avoid this`
        this.logger.warn({ replica: this.name, behind, minSeq: e.minSeq, checkpoint: e.after }, message)
        await this.restartBootstrap(signal, kind, message)
        return
      }
      case 'transient': {
        const e = asTidemarkError(error)
        this.machine.dispatch('transient', e.message)
        this.connected = false
        this.lastError = e.message
        const pause = this.backoff.next()
        this.logger.warn({ replica: this.name, err: e.message, code: e.code, retryInMs: pause }, `replica ${this.name}: ${e.message}; retrying in ${pause} ms`)
        await this.backoff.sleep(pause, signal).catch(() => {})
      }
    }
  }

  private async restartBootstrap(signal: AbortSignal, kind: 'epoch-changed' | 'history-rewound' | 'log-truncated', reason: string): Promise<void> {
    const info = await this.source.info(this.feed, signal)
    this.bootstrapProgress = await this.store.beginBootstrap(this.name, info.epoch, info.head)
    this.machine.dispatch(kind, reason)
  }

  /** DESIGN.md's bootstrap: remember the head, copy the state in chunks, apply the log past the last chunk's position, swap. */
  private async bootstrap(signal: AbortSignal, reason: string): Promise<void> {
    this.machine.dispatch('copy-missing', reason)
    const state = (await this.store.state(this.name)) as ReplicaState
    let p = state.bootstrap
    let expectedRows: number | undefined
    if (!p) {
      const info = await this.source.info(this.feed, signal)
      p = await this.store.beginBootstrap(this.name, info.epoch, info.head)
      expectedRows = info.keys
    }
    this.bootstrapProgress = p
    this.connected = true
    const limit = this.options.snapshotChunk ?? 5000
    // Pages come fetched ahead (by the HTTP client on a thread of its own): network, checks and
    // hashing overlap the store's writes.
    if (!p.snapshotDone) {
      const pages = snapshotPages(this.source, this.feed, { after: p.afterKey, limit, epoch: p.epoch, signal, ...(expectedRows === undefined ? {} : { expectedRows }) })
      for await (const page of pages) {
        signal.throwIfAborted()
        // The protocol promises a chunk is read at or above any head read before it (the server
        // folds its log in first). One below it lacks the writes in between, which the log pulled
        // after the snapshot (from the head read first) would never bring: refuse it, keep nothing
        // of it, and ask again (a server behind a stale read replica, a broken proxy cache).
        if (page.head < p.readHead) {
          throw new ProtocolError(
            `the snapshot chunk ${p.afterKey === null ? 'from the first key' : `after key ${JSON.stringify(p.afterKey)}`} was read at head ${page.head}, below head ${p.readHead} read before it: ` +
              'the source broke the protocol (is a feed server reading a stale copy?); nothing of the chunk was kept, asking again',
            { details: { head: page.head, readHead: p.readHead } },
          )
        }
        const readHead = Math.max(p.readHead, page.head)
        await this.store.writeSnapshotChunk(this.name, page.rows, { afterKey: page.last, readHead, done: page.done })
        p = { ...p, afterKey: page.last, readHead, snapshotDone: page.done }
        this.bootstrapProgress = p
        this.sourceHead = Math.max(this.sourceHead, page.head)
        this.backoff.reset()
        if (page.done) break
      }
      if (!p.snapshotDone) throw new ProtocolError(`the snapshot of feed "${this.feed}" ended after key ${JSON.stringify(p.afterKey)} without saying it was done`)
    }
    while (p.seq < p.readHead) {
      signal.throwIfAborted()
      const page = await this.source.changes(this.feed, { after: p.seq, limit: this.options.pullLimit ?? 5000, epoch: p.epoch, signal })
      if (page.changes.length === 0) {
        if (page.head < p.readHead) throw new HistoryRewoundError(this.feed, page.head, p.readHead)
        continue
      }
      await this.store.applyToBootstrap(this.name, page.changes, page.last)
      p = { ...p, seq: page.last }
      this.bootstrapProgress = p
      this.sourceHead = Math.max(this.sourceHead, page.head)
    }
    const done = await this.store.finishBootstrap(this.name, this.options.apply)
    this.bootstrapProgress = null
    this.adopt(done)
    this.logger.info({ replica: this.name, seq: done.seq, keys: done.keys }, `replica ${this.name}: bootstrapped at ${done.seq} with ${done.keys} keys`)
    this.machine.dispatch('bootstrapped', `bootstrapped at ${done.seq}`)
    this.settleWaiters()
    void this.store.collectGarbage(this.name).catch((error: unknown) => {
      this.logger.warn({ replica: this.name, err: (error as Error).message }, 'dropping the old copy failed; it will be retried')
    })
  }

  /** Live: apply deliveries that follow on; pull from the log for anything else. */
  private async follow(signal: AbortSignal): Promise<void> {
    const epoch = this.epoch as string
    signal.throwIfAborted()
    // Learn the head now: a replica already at it is live at once, not after the first long-poll.
    const info = await this.source.info(this.feed, signal)
    if (info.epoch !== epoch) throw new EpochChangedError(this.feed, epoch, info.epoch)
    if (info.head < this.checkpoint) throw new HistoryRewoundError(this.feed, info.head, this.checkpoint)
    this.sourceHead = Math.max(this.sourceHead, info.head)
    const inner = new AbortController()
    const onAbort = (): void => inner.abort(signal.reason)
    // Stopped while learning the head: an abort that already happened fires no listener.
    if (signal.aborted) return
    signal.addEventListener('abort', onAbort, { once: true })
    let lastProgress = { seq: this.checkpoint, at: this.now() }
    const headCheckMs = this.options.headCheckMs ?? 30_000
    const slaMs = this.options.reconcile?.slaMs
    let slaRunAt = -1
    const disarm = this.runs.arm(
      () => this.store.takeRunRequests(this.name),
      () => inner.abort(new ReconcileWake('reconcile')),
    )
    const headCheck = this.timers.setInterval(() => {
      void this.source
        .info(this.feed, inner.signal)
        .then(async (info) => {
          if (info.epoch !== epoch) return inner.abort(new EpochChangedError(this.feed, epoch, info.epoch))
          this.sourceHead = Math.max(this.sourceHead, info.head)
          await this.store.noteSourceHead(this.name, info.head)
          // At the head, waiting is not stalling: count from here, so that the next change is not
          // pulled from the log just because the replica sat idle longer than the check's period.
          if (info.head <= this.checkpoint) lastProgress = { seq: this.checkpoint, at: this.now() }
          const stalledFor = this.now() - lastProgress.at
          if (slaMs !== undefined && info.head > this.checkpoint && this.checkpoint === lastProgress.seq && stalledFor >= slaMs && slaRunAt !== lastProgress.seq) {
            slaRunAt = lastProgress.seq
            this.logger.warn(
              { replica: this.name, head: info.head, checkpoint: this.checkpoint },
              `replica ${this.name} has not advanced within its SLA (${Math.round(stalledFor / 1000)} s) while the source is at ${info.head}: reconciling`,
            )
            return this.runs.due(this.runs.defaultRun('sla'))
          }
          if (info.head > this.checkpoint && this.checkpoint === lastProgress.seq && stalledFor >= headCheckMs) {
            this.logger.warn(
              { replica: this.name, head: info.head, checkpoint: this.checkpoint },
              `replica ${this.name} has not advanced for ${Math.round((this.now() - lastProgress.at) / 1000)} s while the source is at ${info.head} (checkpoint ${this.checkpoint}): pulling from the log`,
            )
            inner.abort(new StallError('stalled'))
          }
        })
        .catch(() => {})
    }, slaMs === undefined ? headCheckMs : Math.max(10, Math.min(headCheckMs, Math.floor(slaMs / 3))))
    // Not unref'd: a running replica keeps its process alive, like a server's socket does.
    let headNotedAt = 0
    const noteHead = async (head: Seq): Promise<void> => {
      // Lag is shown by `tidemark status`: record the head at most once a second.
      if (this.now() - headNotedAt < 1000) return
      headNotedAt = this.now()
      await this.store.noteSourceHead(this.name, head)
    }
    this.updateFollowPhase()
    try {
      for await (const delivery of this.transport.subscribe(this.feed, { epoch, position: () => this.checkpoint, signal: inner.signal })) {
        this.connected = true
        this.lastError = null
        this.backoff.reset()
        if (delivery.epoch !== epoch) throw new EpochChangedError(this.feed, epoch, delivery.epoch)
        if (delivery.head !== undefined) {
          if (delivery.head < this.checkpoint) throw new HistoryRewoundError(this.feed, delivery.head, this.checkpoint)
          this.sourceHead = Math.max(this.sourceHead, delivery.head)
        }
        const plan = planDelivery(this.checkpoint, delivery.changes)
        if (plan.apply.length > 0) await this.applyChanges(plan.apply, plan.upTo)
        if (plan.gap) {
          this.logger.info({ replica: this.name, checkpoint: this.checkpoint, highest: plan.highest }, `replica ${this.name}: delivery does not follow ${this.checkpoint}; pulling from the log`)
          await this.pullFromLog(epoch, plan.highest, inner.signal)
        }
        await delivery.ack?.()
        await noteHead(Math.max(this.sourceHead, this.checkpoint))
        if (this.checkpoint !== lastProgress.seq) lastProgress = { seq: this.checkpoint, at: this.now() }
        this.updateFollowPhase()
      }
      if (!inner.signal.aborted) throw new TidemarkError('store-unavailable', `the ${this.transport.name} transport ended by itself`)
    } catch (error) {
      if (signal.aborted || !inner.signal.aborted) throw error
    } finally {
      this.timers.clearInterval(headCheck)
      disarm()
      signal.removeEventListener('abort', onAbort)
      inner.abort()
    }
    // The subscription was cut from inside (whether the transport threw or simply ended).
    const reason = inner.signal.reason as unknown
    if (signal.aborted) return
    if (reason instanceof StallError) await this.pullFromLog(epoch, this.sourceHead, signal)
    else if (reason instanceof TidemarkError) throw reason
  }

  /** Pulls whole transactions from the log until the checkpoint reaches `target` (or the head). */
  private async pullFromLog(epoch: string, target: Seq, signal: AbortSignal): Promise<void> {
    while (this.checkpoint < target) {
      const page = await this.source.changes(this.feed, { after: this.checkpoint, limit: this.options.pullLimit ?? 5000, epoch, signal })
      this.sourceHead = Math.max(this.sourceHead, page.head)
      if (page.changes.length === 0) {
        if (page.head < this.checkpoint) throw new HistoryRewoundError(this.feed, page.head, this.checkpoint)
        return // The delivery promised more than the log has: it was forged or from elsewhere.
      }
      await this.applyChanges(page.changes, page.last)
    }
  }

  private async applyChanges(changes: Parameters<ReplicaStore<Tx>['apply']>[1], upTo: Seq): Promise<void> {
    const state = await this.store.apply(this.name, changes, upTo, this.options.apply)
    this.adopt(state)
    this.updateFollowPhase()
    this.settleWaiters()
  }

  /** live at the head; back to catching-up when it falls far behind. */
  private updateFollowPhase(): void {
    const behind = this.sourceHead - this.checkpoint
    if (behind <= 0) this.machine.dispatch('at-head', `at head ${this.checkpoint}`)
    else if (behind > (this.options.catchUpThreshold ?? 10_000)) this.machine.dispatch('fell-behind', `${behind} changes behind`)
  }

  private adopt(state: ReplicaState): void {
    this.epoch = state.epoch
    this.checkpoint = state.seq
    this.sourceHead = Math.max(this.sourceHead, state.sourceHead)
    this.bootstrapProgress = state.bootstrap
  }

  private settleWaiters(): void {
    if (this.epoch === null || this.machine.phase === 'bootstrapping') return
    this.waiters.settle(this.checkpoint)
  }

  private fail(error: unknown): void {
    this.failure ??= error
    this.lastError = asTidemarkError(error).message
    this.machine.dispatch('fatal', this.lastError)
    this.waiters.rejectAll(error)
    this.runs.rejectAll(error)
  }
}

/** An error as the event it is for the replica (PHASE_TABLE says what each does). */
export function classify(error: unknown): Extract<EventKind, 'fatal' | 'epoch-changed' | 'history-rewound' | 'log-truncated' | 'transient'> {
  if (isFinal(error)) return 'fatal'
  if (error instanceof EpochChangedError) return 'epoch-changed'
  if (error instanceof HistoryRewoundError) return 'history-rewound'
  if (error instanceof LogTruncatedError) return 'log-truncated'
  return 'transient'
}

/** What retrying cannot fix: a failing hook, a claim held elsewhere, not a store, a refused token, a feed that does not exist. */
function isFinal(error: unknown): boolean {
  if (error instanceof ApplyFailedError || error instanceof ConflictError || error instanceof NotAStoreError) return true
  return error instanceof TidemarkError && (error.code === 'unauthorized' || error.code === 'forbidden' || error.code === 'unknown-feed' || error.code === 'schema-too-new')
}

export function createReplica<Tx>(options: ReplicaOptions<Tx>): Replica<Tx> {
  return new Replica(options)
}

function checkLimit(name: string, value: number | undefined, max: number): void {
  if (value === undefined) return
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new BadRequestError(`${name} must be a whole number from 1 to ${max} (the protocol's bound), not ${value}`)
  }
}
