import type { Figure, FigureInput } from './harness.js'

/** What a suite gets from the harness. */
export interface BenchContext {
  /** Small sizes: the whole run in well under a minute (development, tests). */
  readonly quick: boolean
  /** Aborted on SIGINT: a suite checks it between measurements. */
  readonly signal: AbortSignal
  /** A fresh temporary folder, removed when the run ends. */
  tmpDir(prefix?: string): string
  /** Records a figure: printed in the table and written to the JSON file. */
  report(figure: FigureInput): Figure
  /** A progress line (stderr; the table goes to stdout). */
  log(message: string): void
}

/** One benchmark suite; `bench/suites/index.ts` lists them. */
export interface Suite {
  name: string
  /** One line for `--help` and docs/bench.md. */
  description: string
  run(ctx: BenchContext): Promise<void>
}
