/**
 * The replica's phases and the only transitions allowed between them (docs/replica.md has the
 * same table with the events that cause each). An illegal transition is a bug and throws.
 */
export type Phase = 'idle' | 'bootstrapping' | 'catching-up' | 'live' | 'reconciling' | 'stopped' | 'failed'

export const TRANSITIONS: Readonly<Record<Phase, readonly Phase[]>> = {
  idle: ['bootstrapping', 'catching-up', 'reconciling', 'stopped', 'failed'],
  bootstrapping: ['bootstrapping', 'catching-up', 'stopped', 'failed'],
  'catching-up': ['live', 'bootstrapping', 'reconciling', 'stopped', 'failed'],
  live: ['catching-up', 'bootstrapping', 'reconciling', 'stopped', 'failed'],
  reconciling: ['catching-up', 'bootstrapping', 'stopped', 'failed'],
  stopped: ['idle'],
  failed: ['idle'],
}

export interface PhaseChange {
  from: Phase
  to: Phase
  reason: string
  at: number
}

export class PhaseMachine {
  private current: Phase = 'idle'
  readonly history: PhaseChange[] = []

  constructor(
    private readonly onChange: (change: PhaseChange) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  get phase(): Phase {
    return this.current
  }

  /** Moves to `to`; staying in a phase is a no-op unless the table allows it as a restart. */
  to(to: Phase, reason: string): void {
    const from = this.current
    if (from === to && !TRANSITIONS[from].includes(to)) return
    if (!TRANSITIONS[from].includes(to)) throw new Error(`replica: illegal phase transition ${from} → ${to} (${reason})`)
    this.current = to
    const change = { from, to, reason, at: this.now() }
    this.history.push(change)
    if (this.history.length > 100) this.history.shift()
    this.onChange(change)
  }
}
