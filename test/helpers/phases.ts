import { setTimeout as delay } from 'node:timers/promises'
import type { PhaseChange } from '../../src/replica/phase.js'

/** Phase changes as `from→to` strings, for comparing with the expected path. */
export function phases(changes: PhaseChange[]): string[] {
  return changes.map((c) => `${c.from}→${c.to}`)
}

/** Polls `condition` until it holds; fails the test after `ms`. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await delay(5)
  }
}
