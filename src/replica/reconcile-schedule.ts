import type { ReconcileMode, ReconcileRun, ReconcileTrigger, RunRequest } from '../reconcile/run.js'
import type { Timers } from '../util/life-cycle.js'

/** When the replica compares itself with its source (docs/reconcile.md). */
export interface ReconcileSchedule {
  /** Once at start-up, as soon as there is a copy. */
  onStart?: boolean
  /** Every so many ms, with jitter (so that many replicas do not ask at once). */
  everyMs?: number
  /** The schedule varies by ± this fraction of `everyMs` (default 0.1). */
  jitter?: number
  /** When the checkpoint has not moved for this long while the source's head is ahead. */
  slaMs?: number
  /** What scheduled, start-up and SLA runs do (default `repair`; on-demand runs say their own). */
  mode?: ReconcileMode
  /** Recompute the replica's digest from its rows first, on scheduled runs too. */
  deep?: boolean
  /** How often to look for runs asked for by another process, e.g. `tidemark repair` (default 1000 ms). */
  requestPollMs?: number
  random?: () => number
}

/** A run waiting its turn, with the caller to answer when it asked in-process. */
export interface DueRun {
  trigger: ReconcileTrigger
  mode: ReconcileMode
  deep: boolean
  requestId?: number
  resolve?: (run: ReconcileRun) => void
  reject?: (error: unknown) => void
}

/**
 * Which reconciliation runs are due and when the next scheduled one is: start-up, the jittered
 * schedule, in-process demands and requests left in the store by another process. The replica
 * takes runs with `next()` between follow sessions; `arm` wakes a follow session when one is due.
 */
export class ReconcileScheduler {
  private queue: DueRun[] = []
  private nextScheduled: number | null = null
  private wake: (() => void) | undefined

  constructor(
    private readonly schedule: ReconcileSchedule | undefined,
    private readonly now: () => number,
    private readonly timers: Timers,
  ) {}

  /** At `run()`: the start-up run if asked for, and the first scheduled time. */
  start(): void {
    if (this.schedule?.onStart) this.queue.push(this.defaultRun('start'))
    this.planNext()
  }

  /** The next scheduled time, from now (after a scheduled run, or at start). */
  planNext(): void {
    const every = this.schedule?.everyMs
    if (every === undefined) return
    const jitter = this.schedule?.jitter ?? 0.1
    const random = this.schedule?.random ?? Math.random
    this.nextScheduled = this.now() + Math.max(1, Math.round(every * (1 + jitter * (2 * random() - 1))))
  }

  defaultRun(trigger: ReconcileTrigger): DueRun {
    return { trigger, mode: this.schedule?.mode ?? 'repair', deep: this.schedule?.deep === true }
  }

  due(run: DueRun): void {
    this.queue.push(run)
    this.wake?.()
  }

  next(): DueRun | undefined {
    return this.queue.shift()
  }

  rejectAll(error: unknown): void {
    const runs = this.queue
    this.queue = []
    for (const r of runs) r.reject?.(error)
  }

  /**
   * While following: `wake` is called when a run becomes due (at once if one already is); the
   * scheduled run fires at its time; requests from other processes are polled. Returns the disarm.
   */
  arm(takeRequests: () => Promise<RunRequest[]>, wake: () => void): () => void {
    this.wake = wake
    let scheduled: unknown
    if (this.nextScheduled !== null) {
      scheduled = this.timers.setTimeout(() => {
        this.nextScheduled = null
        this.due(this.defaultRun('schedule'))
      }, Math.max(0, this.nextScheduled - this.now()))
    }
    // Asked for while the session was starting: nothing woke it.
    if (this.queue.length > 0) wake()
    const poll = this.timers.setInterval(() => {
      takeRequests()
        .then((requests) => {
          for (const r of requests) this.due({ trigger: 'demand', mode: r.mode, deep: r.deep, requestId: r.id })
        })
        .catch(() => {})
    }, this.schedule?.requestPollMs ?? 1000)
    return () => {
      this.wake = undefined
      if (scheduled !== undefined) this.timers.clearTimeout(scheduled)
      this.timers.clearInterval(poll)
    }
  }
}
