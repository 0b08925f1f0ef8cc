import type { Command } from 'commander'
import type { SourceStore } from '../store/store.js'
import { openSourceStore } from '../store/open.js'
import { createCliLogger, type PinoLogger } from './logger.js'
import { LineWriter } from './output.js'

/**
 * What every command shares: the --verbose flag, the logger, stdout with backpressure, and how a
 * store is opened and closed. One per run; commands get it from their registrar.
 */
export class Cli {
  verbose = false
  private rootLogger: PinoLogger | undefined
  private stdoutWriter: LineWriter | undefined

  constructor(private readonly stdout: NodeJS.WriteStream = process.stdout) {}

  /** The root pino logger (created on first use, so that --verbose is known by then). */
  get log(): PinoLogger {
    return (this.rootLogger ??= createCliLogger({ verbose: this.verbose }))
  }

  logger(component: string): PinoLogger {
    return this.log.child({ component })
  }

  /** stdout, for the command's result: data or one summary line. Logs and errors go to stderr. */
  get out(): LineWriter {
    return (this.stdoutWriter ??= new LineWriter(this.stdout))
  }

  /** Writes lines to stdout and waits until they are handed over. */
  async print(...lines: string[]): Promise<void> {
    for (const line of lines) await this.out.line(line)
    await this.out.flush()
  }

  /** A message for the operator on stderr (not a log line): e.g. "serving … at …". */
  note(text: string): void {
    process.stderr.write(`${text}\n`)
  }

  /**
   * Opens the source store at `db`, runs `fn`, and closes the store whatever happens. A missing file
   * is an error (`store-unavailable`) unless `create` is set.
   */
  async withStore<T>(db: string, options: { create?: boolean; readonly?: boolean }, fn: (store: SourceStore) => Promise<T>): Promise<T> {
    const store = await this.openStore(db, options)
    try {
      return await fn(store)
    } finally {
      await store.close()
    }
  }

  /**
   * For the commands that read a source (`feeds`, `dump`): opens it read-only — a file that is not a
   * source is refused and left as it was — and runs `fn`. When the digest (and so the state and the
   * key counts) of the feeds read lags their log, the log is folded into it first, as any reader of
   * the state does on a feed server: the one write such a command makes, on a store already known to
   * be a source at this tidemark's schema; no retention, no schema change.
   */
  async readSource<T>(db: string, feeds: string[] | 'all', fn: (store: SourceStore) => Promise<T>): Promise<T> {
    const lagging = await this.withStore(db, { readonly: true }, async (store) =>
      (await store.listFeeds()).filter((f) => (feeds === 'all' || feeds.includes(f.name)) && f.digestSeq < f.head).map((f) => f.name),
    )
    if (lagging.length > 0) {
      // A snapshot read folds the feed's log into its state first (the store port's contract).
      await this.withStore(db, {}, async (store) => {
        for (const feed of lagging) await store.snapshot(feed, null, 1)
      })
    }
    return this.withStore(db, { readonly: true }, fn)
  }

  openStore(db: string, options: { create?: boolean; readonly?: boolean } = {}): Promise<SourceStore> {
    return openSourceStore(db, { create: options.create ?? false, readonly: options.readonly ?? false, logger: this.logger('store') })
  }
}

/**
 * Adds one command to the program. Each file in `src/cli/commands/` exports one, and `main.ts`
 * lists them. Create the command with `program.command(…)` so that it inherits the program's
 * error handling (exitOverride, output configuration).
 */
export type Registrar = (program: Command, cli: Cli) => void
