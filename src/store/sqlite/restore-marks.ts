import type { Database } from 'better-sqlite3'
import { hash } from 'node:crypto'
import { randomBytes } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { newEpoch } from './sqlite-source.js'

interface Mark {
  epoch: string
  seq: number
  /** Hash of the change at `seq`, to tell a restored-then-rewritten log from the one we saw. */
  fingerprint: string | null
}

/**
 * Notices that the database file was restored from an older copy, which would silently rewind
 * history under replicas that are already further along. A restore brings back everything inside
 * the file, so the evidence is kept beside it: `<db>-tidemark.json` records, per feed, the highest
 * head seen and a fingerprint of that change. When the file's head is lower, or its change at that
 * seq differs, the feed gets a new epoch (replicas re-bootstrap). A backup that includes the
 * marks file restores the old marks too and cannot be detected this way (docs/protocol.md).
 */
export class RestoreMarks {
  private marks: Record<string, Mark> = {}
  private lastSaved = 0

  constructor(
    private readonly db: Database,
    private readonly path: string | undefined,
  ) {
    if (!path) return
    try {
      this.marks = (JSON.parse(readFileSync(path, 'utf8')) as { feeds: Record<string, Mark> }).feeds ?? {}
    } catch {
      this.marks = {}
    }
  }

  /** Resets the epoch of each feed that went back in history; returns their names. */
  check(): string[] {
    const reset: string[] = []
    const feeds = this.db.prepare('SELECT name, epoch, head, min_seq FROM tidemark_feeds').all() as Array<{
      name: string
      epoch: string
      head: number
      min_seq: number
    }>
    for (const f of feeds) {
      const mark = this.marks[f.name]
      if (!mark || mark.epoch !== f.epoch) continue
      const rewound =
        f.head < mark.seq ||
        (mark.fingerprint !== null && mark.seq >= f.min_seq && this.fingerprint(f.name, mark.seq) !== mark.fingerprint)
      if (rewound) {
        this.db.prepare('UPDATE tidemark_feeds SET epoch = ? WHERE name = ? AND epoch = ?').run(newEpoch(), f.name, f.epoch)
        reset.push(f.name)
      }
    }
    if (reset.length > 0) this.save(true)
    return reset
  }

  /** Records the current heads (at most once a second unless forced). */
  save(force = false): void {
    if (!this.path || (!force && Date.now() - this.lastSaved < 1000)) return
    const feeds = this.db.prepare('SELECT name, epoch, head FROM tidemark_feeds').all() as Array<{ name: string; epoch: string; head: number }>
    const marks: Record<string, Mark> = {}
    for (const f of feeds) marks[f.name] = { epoch: f.epoch, seq: f.head, fingerprint: this.fingerprint(f.name, f.head) }
    // A temporary name of this writer's own: two processes saving at once (a CLI command beside a
    // feed server) must not rename each other's file away. The last rename wins, whole.
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    writeFileSync(tmp, JSON.stringify({ feeds: marks }))
    renameSync(tmp, this.path)
    this.marks = marks
    this.lastSaved = Date.now()
  }

  private fingerprint(feed: string, seq: number): string | null {
    const row = this.db.prepare('SELECT key, op, data, ts FROM tidemark_changes WHERE feed = ? AND seq = ?').get(feed, seq) as
      | { key: string; op: number; data: string | null; ts: number }
      | undefined
    return row ? hash('md5', `${row.key}\u0000${row.op}\u0000${row.data}\u0000${row.ts}`, 'hex') : null
  }
}
