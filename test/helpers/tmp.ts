import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'

/** A fresh temporary folder removed when the test file ends. */
export function tmpDir(prefix = 'tidemark-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function tmpDb(name = 'source.db'): string {
  return join(tmpDir(), name)
}
