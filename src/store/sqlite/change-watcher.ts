import type { Database, Statement } from 'better-sqlite3'
import { watch, type FSWatcher } from 'node:fs'

/**
 * Wakes long-polls when any connection — this process or another — commits to the SQLite file.
 * Two signals: an fs watch on the WAL file (a commit appends to it: wakes within a millisecond or
 * two), and a check of `PRAGMA data_version` every `pollMs` as the safety net for file systems
 * where watching is unreliable. Both run only while somebody waits.
 */
export class ChangeWatcher {
  private readonly waiters = new Set<() => void>()
  private readonly dataVersion: Statement
  private lastVersion = -1
  private timer: NodeJS.Timeout | undefined
  private fsWatcher: FSWatcher | undefined

  constructor(
    db: Database,
    private readonly walPath: string | undefined,
    private readonly pollMs = 10,
  ) {
    this.dataVersion = db.prepare('PRAGMA data_version').pluck()
  }

  /** Calls `wake` after every commit seen, until the returned function is called. */
  subscribe(wake: () => void): () => void {
    this.waiters.add(wake)
    if (this.waiters.size === 1) this.start()
    return () => {
      this.waiters.delete(wake)
      if (this.waiters.size === 0) this.stop()
    }
  }

  /** Wakes every waiter: for commits made through this very connection, which data_version misses. */
  notify(): void {
    for (const wake of [...this.waiters]) wake()
  }

  private check = (): void => {
    const version = this.dataVersion.get() as number
    if (version !== this.lastVersion) {
      this.lastVersion = version
      this.notify()
    }
  }

  private start(): void {
    this.lastVersion = this.dataVersion.get() as number
    this.timer = setInterval(this.check, this.pollMs)
    this.timer.unref()
    if (this.walPath) {
      try {
        this.fsWatcher = watch(this.walPath, { persistent: false }, this.check)
        this.fsWatcher.on('error', () => this.fsWatcher?.close())
      } catch {
        // No WAL file yet or no inotify: the poll alone still wakes within pollMs.
      }
    }
  }

  private stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.fsWatcher?.close()
    this.fsWatcher = undefined
  }

  close(): void {
    this.waiters.clear()
    this.stop()
  }
}
