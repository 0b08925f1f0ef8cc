import { fileURLToPath } from 'node:url'
import type { Registrar } from '../src/cli/cli.js'
import { examples } from '../src/cli/options.js'
import { stopSignal } from '../src/cli/stop-signal.js'
import { EXIT, TidemarkError } from '../src/errors.js'

/** The CLI beside this file's compiled or source copy of the library (build/src/cli/main.js or src/cli/main.ts). */
const TIDEMARK_CLI = fileURLToPath(new URL(`../src/cli/main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))

interface DemoCommandOptions {
  dir?: string
  keep?: boolean
  quick?: boolean
}

/** `npm run demo`: the README's first command (demo.ts tells the story). */
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
${examples(['npm run demo', 'npm run demo -- --dir demo --keep && npx tidemark status demo/replica-b.db'])}`,
    )
    .action(async (options: DemoCommandOptions) => {
      const controller = new AbortController()
      const stop = stopSignal(cli.note.bind(cli))
      void stop.signalled.then((signal) => controller.abort(new Error(`interrupted by ${signal}`)))
      const { runDemo } = await import('./demo.js')
      let equal: boolean
      try {
        const result = await runDemo({
          ...(options.dir !== undefined ? { dir: options.dir } : {}),
          keep: options.keep === true,
          quick: options.quick === true,
          // Replica B is the tidemark CLI in a child process, run the way the demo was (node, its flags: tsx in tests).
          cli: [process.execPath, ...process.execArgv, TIDEMARK_CLI],
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
