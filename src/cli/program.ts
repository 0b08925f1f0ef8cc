import { Command } from 'commander'
import { existsSync, readFileSync } from 'node:fs'
import { Cli, type Registrar } from './cli.js'
import { examples } from './options.js'
import { reportError } from './report-error.js'

/** package.json sits two levels up from src/cli/ and dist/cli/, three from the apps' build/src/cli/. */
function packageVersion(): string {
  for (const up of ['../../package.json', '../../../package.json']) {
    const url = new URL(up, import.meta.url)
    if (existsSync(url)) return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version
  }
  return 'unknown'
}

/** Builds the `tidemark` program with the given commands. */
export function createProgram(cli: Cli, commands: readonly Registrar[]): Command {
  const program = new Command('tidemark')
    .description("Keep replicas of another service's data in sync with the service that owns it — and prove that they are.")
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--verbose', 'debug logs, and stack traces with errors')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .showSuggestionAfterError()
    .configureOutput({
      // Usage errors in the CLI's one-line format: "tidemark: missing required argument 'db'".
      // Commander puts its suggestion on a second line: keep the promise of one line per error.
      outputError: (text, write) => write(`tidemark: ${text.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .addHelpText(
      'after',
      examples([
        "tidemark write shop.db customers 42 '{\"name\":\"Ada\"}'",
        'tidemark track shop.db --table customers --key id',
        'tidemark feeds shop.db',
        'tidemark serve shop.db --port 7480 --token "$TOKEN"',
        'tidemark <command> --help',
      ]) + '\nExit codes (every command): 0 done, 64 usage, 70 a bug; the whole table is in docs/cli.md.\n',
    )
  program.hook('preAction', (_program, action) => {
    cli.verbose = Boolean(action.optsWithGlobals<{ verbose?: boolean }>().verbose)
  })
  for (const register of commands) register(program, cli)
  return program
}

/** Runs the CLI on `argv` (process.argv form) and returns the exit code. Never throws. */
export async function runCli(argv: string[], commands: readonly Registrar[]): Promise<number> {
  const cli = new Cli()
  // `tidemark --help | head`: the reader going away ends the output, it is not a crash. (Commands'
  // own output goes through LineWriter, which notices the same error and stops writing.)
  process.stdout.on('error', ignoreClosedPipe)
  const dashdash = argv.indexOf('--')
  // Known before commander parses, so that a parse error can already honour it.
  cli.verbose = (dashdash === -1 ? argv : argv.slice(0, dashdash)).includes('--verbose')
  try {
    const program = createProgram(cli, commands)
    await program.parseAsync(argv)
    return 0
  } catch (error) {
    return reportError(error, { verbose: cli.verbose, write: (text) => process.stderr.write(text) })
  }
}

function ignoreClosedPipe(error: NodeJS.ErrnoException): void {
  if (error.code !== 'EPIPE') throw error
}
