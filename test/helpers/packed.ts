import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tmpDir } from './tmp.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/**
 * The package as `npm pack` makes it, built afresh into a folder of its own (the repository's dist/
 * is left alone, for tests that run beside this one), then unpacked as `node_modules/tidemark` of a
 * new project whose other dependencies are the repository's own, linked. Returns the project.
 */
export function packedProject(): { project: string; tarball: string } {
  const dir = tmpDir('tidemark-pack-')
  const stage = join(dir, 'stage')
  mkdirSync(stage)
  for (const entry of ['package.json', 'README.md', 'LICENSE', 'bin', 'docs']) {
    try {
      cpSync(join(ROOT, entry), join(stage, entry), { recursive: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')], { stdio: 'pipe' })
  const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: stage, encoding: 'utf8' }).trim().split('\n').pop() as string
  const project = join(dir, 'project')
  const modules = join(project, 'node_modules')
  mkdirSync(join(modules, 'tidemark'), { recursive: true })
  execFileSync('tar', ['xzf', join(dir, tarball), '-C', join(modules, 'tidemark'), '--strip-components=1'])
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (name === '.bin' || name === 'tidemark') continue
    symlinkSync(join(ROOT, 'node_modules', name), join(modules, name))
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'adopter', private: true, type: 'module' }))
  return { project, tarball: join(dir, tarball) }
}
