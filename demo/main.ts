#!/usr/bin/env node
/**
 * `npm run demo`: an application on top of the library, not part of the published package. It is
 * the CLI's program with one command, so that its options, errors and exit codes are the CLI's.
 */
import { runCli } from '../src/cli/program.js'
import { registerDemo } from './command.js'

const [node = process.execPath, script = 'demo', ...rest] = process.argv
process.exitCode = await runCli([node, script, 'demo', ...rest], [registerDemo])
