#!/usr/bin/env node
/**
 * The `tidemark` command. Each command lives in its own file under ./commands and is added to the
 * program by the registrar it exports: to add a command, add its registrar to COMMANDS.
 */
import type { Registrar } from './cli.js'
import { registerDump } from './commands/dump.js'
import { registerExport } from './commands/export.js'
import { registerFeeds } from './commands/feeds.js'
import { registerImport } from './commands/import.js'
import { registerInspect } from './commands/inspect.js'
import { registerRepair, registerVerify } from './commands/reconcile.js'
import { registerRelay } from './commands/relay.js'
import { registerReplicate } from './commands/replicate.js'
import { registerResetEpoch } from './commands/reset-epoch.js'
import { registerRetention } from './commands/retention.js'
import { registerServe } from './commands/serve.js'
import { registerStatus } from './commands/status.js'
import { registerToken } from './commands/token.js'
import { registerTrack } from './commands/track.js'
import { registerUntrack } from './commands/untrack.js'
import { registerWrite } from './commands/write.js'
import { runCli } from './program.js'

const COMMANDS: readonly Registrar[] = [
  registerServe,
  registerWrite,
  registerDump,
  registerExport,
  registerImport,
  registerInspect,
  registerFeeds,
  registerTrack,
  registerUntrack,
  registerResetEpoch,
  registerRetention,
  registerReplicate,
  registerRelay,
  registerStatus,
  registerVerify,
  registerRepair,
  registerToken,
]

process.exitCode = await runCli(process.argv, COMMANDS)
