import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** CPU time of other processes (servers the bench starts or talks to), read from /proc. */

let ticksPerSecond: number | undefined

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces, and ends with ')'). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

function ticksToMs(ticks: number): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  return (ticks * 1000) / ticksPerSecond
}

/** A process's CPU time so far (user + system), in ms; undefined when it cannot be read. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const f = statFields(pid)
    return ticksToMs(Number(f[11]) + Number(f[12]))
  } catch {
    return undefined
  }
}

/**
 * A process tree's CPU time so far, in ms: the process, its live children, and the children it
 * has already reaped (a PostgreSQL postmaster and its backends and workers, including those that
 * came and went). Undefined without /proc.
 */
export function processTreeCpuMs(pid: number): number | undefined {
  try {
    const own = statFields(pid)
    let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue
      try {
        const f = statFields(Number(d))
        if (Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12])
      } catch {
        // gone meanwhile: its time is in the parent's reaped children now, or lost with it
      }
    }
    return ticksToMs(ticks)
  } catch {
    return undefined
  }
}
