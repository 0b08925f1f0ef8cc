import fc from 'fast-check'

/**
 * fast-check settings from the environment: TIDEMARK_SEED and TIDEMARK_RUNS. The seed is printed
 * so that any failure can be replayed with `TIDEMARK_SEED=<seed> node scripts/test.mjs <file>`.
 */
export function propertyParameters(defaultRuns: number): fc.Parameters<unknown> {
  const seed = process.env.TIDEMARK_SEED ? Number(process.env.TIDEMARK_SEED) : Math.floor(Math.random() * 2 ** 31)
  const numRuns = process.env.TIDEMARK_RUNS ? Number(process.env.TIDEMARK_RUNS) : defaultRuns
  process.stderr.write(`property: seed=${seed} runs=${numRuns} (replay with TIDEMARK_SEED=${seed})\n`)
  return { seed, numRuns, verbose: 1 }
}
