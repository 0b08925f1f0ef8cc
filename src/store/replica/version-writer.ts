import { bucketOf } from '../../digest/row-hash.js'
import { StoredChange } from '../../protocol/encoded.js'
import type { Change, Seq } from '../../protocol/types.js'
import { checkUpTo, repairVersion } from '../replica-row.js'
import type { RepairFix } from '../replica-store.js'

/** The version of a key a generation holds: its seq and row hash (null: a tombstone). */
export interface HeldVersion<H> {
  seq: Seq
  hash: H | null
}

/** Whether a version at `seq` replaces the one held: the higher seq wins, and any version beats none. */
export function wins<H>(held: HeldVersion<H> | undefined, seq: Seq): boolean {
  return held === undefined || held.seq < seq
}

/** The changes of `changes` above `above` (the ones not yet applied), each checked to be at or below `upTo`. */
export function changesAbove(changes: readonly Change[], above: Seq, upTo: Seq): Change[] {
  const out: Change[] = []
  for (const c of changes) {
    if (c.seq <= above) continue
    checkUpTo(c, upTo)
    out.push(c)
  }
  return out
}

/**
 * Writes versions of keys into one generation inside the caller's transaction by the rules of
 * version precedence (ReplicaStore.applyToBootstrap, apply, repair), and counts what they do to the
 * digest and the number of live keys. A backend says how a version is read (`held`, synchronous: a
 * statement on SQLite, versions loaded beforehand on PostgreSQL), hashed, stored and counted in its
 * digest (`H` is its hash type).
 */
export abstract class VersionWriter<H> {
  /** Change in the number of live rows. */
  keysDelta = 0

  constructor(
    /** Keep deletes as tombstones (while bootstrapping: an older snapshot row must not revive the key). */
    readonly tombstones: boolean,
  ) {}

  /** The version held for `key` (undefined: no row). */
  protected abstract held(key: string): HeldVersion<H> | undefined
  protected abstract hash(key: string, seq: Seq, text: string): H
  protected abstract sameHash(a: H, b: H): boolean
  /** Stores the version (a delete without tombstones removes the row `cur`, if any). */
  protected abstract store(key: string, seq: Seq, text: string | null, h: H | null, bucket: number, cur: HeldVersion<H> | undefined): void
  protected abstract digestAdd(bucket: number, h: H): void
  protected abstract digestRemove(bucket: number, h: H): void

  /** Writes the version when it wins over the one held; says whether it did. `h` and `bucket`: when the caller has them already. */
  write(key: string, seq: Seq, text: string | null, h?: H | null, bucket?: number): boolean {
    const cur = this.held(key)
    if (!wins(cur, seq)) return false
    this.put(key, seq, text, h === undefined ? this.hashOf(key, seq, text) : h, bucket ?? bucketOf(key), cur)
    return true
  }

  /** Sets the key to exactly this version, whatever its seq (a repair); says whether anything changed. */
  replace(key: string, seq: Seq, text: string | null): boolean {
    const cur = this.held(key)
    const h = this.hashOf(key, seq, text)
    if (cur === undefined && h === null) return false
    if (cur !== undefined && cur.seq === seq && cur.hash !== null && h !== null && this.sameHash(cur.hash, h)) return false
    this.put(key, seq, text, h, bucketOf(key), cur)
    return true
  }

  /** Repairs one drifted key (ReplicaStore.repair): the change the hook sees, or null when the key was right. */
  repair(fix: RepairFix, checkpoint: Seq, ts: number): Change | null {
    const { seq, text } = repairVersion(fix, checkpoint)
    if (!this.replace(fix.key, seq, text)) return null
    return new StoredChange(seq, fix.key, text === null ? 'delete' : 'upsert', seq, ts, text)
  }

  protected hashOf(key: string, seq: Seq, text: string | null): H | null {
    return text === null ? null : this.hash(key, seq, text)
  }

  protected put(key: string, seq: Seq, text: string | null, h: H | null, bucket: number, cur: HeldVersion<H> | undefined): void {
    this.store(key, seq, text, h, bucket, cur)
    const old = cur?.hash ?? null
    if (old !== null || h !== null) this.account(bucket, old, h)
  }

  /** A row with hash `old` leaves the bucket and one with `next` joins it (either null: none). */
  protected account(bucket: number, old: H | null, next: H | null): void {
    if (old !== null) {
      this.digestRemove(bucket, old)
      this.keysDelta -= 1
    }
    if (next !== null) {
      this.digestAdd(bucket, next)
      this.keysDelta += 1
    }
  }
}
