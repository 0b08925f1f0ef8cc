import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processTreeCpuMs } from '../process-cpu.js'

/**
 * A throwaway PostgreSQL cluster (for the bench, and for the tests) started from the installed binaries (Debian's postgresql
 * package; installed with apt-get when missing), on a free port on 127.0.0.1 with trust auth.
 * Used by the tests when no server is given or running, and by tests that must restart a server
 * (never the machine's shared one).
 */
export interface Cluster {
  url: string
  port: number
  dataDir: string
  restart(): void
  stop(): void
  /** CPU time (ms) of the server's processes so far, those that have exited included; undefined without /proc. */
  cpuMs(): number | undefined
}

function binDir(): string | undefined {
  for (const root of ['/usr/lib/postgresql']) {
    if (!existsSync(root)) continue
    const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
    for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin')
  }
  return undefined
}

export function postgresBinaries(): string {
  let dir = binDir()
  if (!dir) {
    process.stderr.write('PostgreSQL binaries not found: installing them with apt-get (postgresql)\n')
    const apt = (args: string[]) => spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    apt(['install', '-y', '--no-install-recommends', 'postgresql'])
    dir = binDir()
    if (!dir) {
      // A fresh machine often has no package lists yet.
      apt(['update'])
      apt(['install', '-y', '--no-install-recommends', 'postgresql'])
      dir = binDir()
    }
  }
  if (!dir) {
    throw new Error(
      'no PostgreSQL binaries (initdb, pg_ctl under /usr/lib/postgresql) and apt-get could not install them: install the postgresql package (the tests can also use a server given in TIDEMARK_TEST_PG_URL)',
    )
  }
  return dir
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

/** initdb refuses to run as root: run the binaries as the `postgres` user then. */
function run(bin: string, args: string[]): void {
  const asRoot = process.getuid?.() === 0
  const cmd = asRoot ? 'runuser' : bin
  const full = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args
  execFileSync(cmd, full, { stdio: ['ignore', 'ignore', 'pipe'] })
}

export async function startCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  const bin = postgresBinaries()
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-pg-'))
  chmodSync(dir, 0o777)
  const dataDir = join(dir, 'data')
  const port = await freePort()
  run(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8'])
  const options = [`-p ${port}`, `-k ${dir}`, `-c listen_addresses=127.0.0.1`, `-c fsync=off`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ')
  const ctl = (args: string[]) => run(join(bin, 'pg_ctl'), ['-D', dataDir, '-w', '-l', join(dir, 'log'), ...args])
  ctl(['-o', options, 'start'])
  let stopped = false
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    restart: () => ctl(['-m', 'fast', '-o', options, 'restart']),
    cpuMs: () => {
      try {
        return processTreeCpuMs(Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]))
      } catch {
        return undefined
      }
    },
    stop: () => {
      if (stopped) return
      stopped = true
      try {
        ctl(['-m', 'immediate', 'stop'])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}
