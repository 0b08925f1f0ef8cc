import { resolve } from 'node:path'
import { EXIT, TidemarkError } from '../../errors.js'
import type { Registrar } from '../cli.js'
import { examples } from '../options.js'
import { stopSignal } from '../stop-signal.js'

interface DemoCommandOptions {
  dir?: string
  keep?: boolean
  quick?: boolean
}

/** `tidemark demo`: the README's first command (src/demo/demo.ts tells the story). */
export const registerDemo: Registrar = (program, cli) => {
  program
    .command('demo')
    .description('see tidemark at work in under a minute: an owner writing, a feed server, two replicas, a lost message, a crash, a proof')
    .option('--dir <dir>', 'put the demo files here (default: a new temporary folder)')
    .option('--keep', 'keep the files at the end, to look at them with `tidemark status`, `sqlite3` …')
    .option('--quick', 'smaller numbers (3,000 customers, a few seconds): for tests')
    .addHelpText(
      'after',
      `
Runs on this machine only (127.0.0.1, SQLite files), then removes what it created unless --keep.
Exits 0 when both replicas equal the owner, by digest and row by row; non-zero otherwise.
${examples(['tidemark demo', 'tidemark demo --dir demo --keep && tidemark status demo/replica-b.db'])}`,
    )
    .action(async (options: DemoCommandOptions) => {
      const controller = new AbortController()
      const stop = stopSignal(cli.note.bind(cli))
      void stop.signalled.then((signal) => controller.abort(new Error(`interrupted by ${signal}`)))
      const { runDemo } = await import('../../demo/demo.js')
      let equal: boolean
      try {
        const result = await runDemo({
          ...(options.dir !== undefined ? { dir: options.dir } : {}),
          keep: options.keep === true,
          quick: options.quick === true,
          // Replica B is this very CLI in a child process, run the way this one was (node, its flags, the entry).
          cli: [process.execPath, ...process.execArgv, resolve(process.argv[1] as string)],
          print: (line) => cli.print(line),
          color: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
          signal: controller.signal,
        })
        equal = result.equal
      } catch (error) {
        if (controller.signal.aborted) {
          cli.note(`tidemark: demo ${(controller.signal.reason as Error).message}; cleaned up`)
          process.exit(EXIT.interrupted)
        }
        throw error
      } finally {
        stop.dispose()
      }
      if (!equal) throw new TidemarkError('internal', 'a replica differs from the owner (see above): that is a bug in tidemark, please report it')
      // A clean close leaves nothing running; if something still holds the event loop, do not hang on it.
      setTimeout(() => process.exit(), 3000).unref()
    })
}
