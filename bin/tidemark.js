#!/usr/bin/env node
// The published entry: runs the compiled CLI. `npm install` builds dist/ (the prepare script).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
if (!existsSync(main)) {
  process.stderr.write('tidemark: dist/ is missing — run `npm run build` (or `npm install`) first\n')
  process.exit(70)
}
await import(main)
