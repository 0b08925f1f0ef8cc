#!/usr/bin/env node
// The published entry: runs the compiled CLI (dist/ ships in the package; a clone builds it with `npm run build`).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))
if (!existsSync(main)) {
  process.stderr.write('tidemark: dist/ is missing — run `npm run build` first\n')
  process.exit(70)
}
await import(main)
