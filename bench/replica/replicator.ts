/**
 * Runs the replicator of `replicate-child.ts` in a child process and returns what it measured, with
 * its peak RSS (as the harness's `runNodeChild` reports it).
 */
import { fileURLToPath } from 'node:url'
import { runNodeChild, type TempDirs } from '../harness.js'
import type { ReplicateJob, ReplicateResult } from './replicate-child.js'

export interface ReplicatorRun extends ReplicateResult {
  peakRssBytes: number
}

export async function runReplicator(temp: TempDirs, job: ReplicateJob): Promise<ReplicatorRun> {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  const script = fileURLToPath(new URL(`./replicate-child${ext}`, import.meta.url))
  const run = await runNodeChild(temp, { args: [script, JSON.stringify(job)], timeoutMs: 15 * 60_000 })
  if (run.code !== 0) throw new Error(`the replicator process exited with ${run.code ?? run.signal}: ${run.stderr.trim()}`)
  const result = JSON.parse(run.stdout) as ReplicateResult
  if (result.checkpoint < job.target) throw new Error(`the replicator stopped at ${result.checkpoint}, short of ${job.target}`)
  return { ...result, peakRssBytes: run.peakRssBytes }
}
