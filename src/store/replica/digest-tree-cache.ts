import { DigestTree } from '../../digest/digest-tree.js'
import type { Seq } from '../../protocol/types.js'
import type { DigestLeaf } from '../store.js'

/** How a write to the store ended, for the trees kept. */
export type WriteOutcome =
  /** Committed: the changes it staged are applied to the trees. */
  | 'committed'
  /** Rolled back for sure (a synchronous transaction that threw): the trees stay as they were. */
  | 'rolled-back'
  /** It failed and may have committed or not (a connection lost at COMMIT): every tree is dropped. */
  | 'unknown'

/**
 * The current copy's digest tree per replica, kept in memory while this store instance holds the
 * claim (ReplicaStore.digestTree): only the claim holder writes the replica then, so applying each
 * committed write's digest changes keeps it exact. A tree read from the database is kept only if no
 * write overlapped the read; a cached one is served only for the generation it was built for. No
 * I/O: the backend says when writes begin and end, stages each write's changes, and gives the reads.
 */
export class DigestTreeCache {
  private readonly trees = new Map<string, { gen: number; tree: DigestTree }>()
  private staged: Array<(trees: Map<string, { gen: number; tree: DigestTree }>) => void> = []
  private begun = 0
  private inFlight = 0

  writeBegan(): void {
    this.begun++
    this.inFlight++
  }

  writeEnded(outcome: WriteOutcome): void {
    this.inFlight--
    const staged = this.staged
    this.staged = []
    if (outcome === 'committed') for (const apply of staged) apply(this.trees)
    else if (outcome === 'unknown') this.trees.clear()
  }

  /**
   * Inside a write: once it commits, `apply` changes the tree of generation `gen` of `name`, if one
   * is kept for that generation then. (Staged by writes under way at once, applied as each ends.)
   */
  stage(name: string, gen: number, apply: (tree: DigestTree) => void): void {
    if (this.trees.get(name)?.gen !== gen) return
    this.staged.push((trees) => {
      const kept = trees.get(name)
      if (kept?.gen === gen) apply(kept.tree)
    })
  }

  /** Forgets the replica's tree (claimed or released, or its digest rewritten). */
  drop(name: string): void {
    this.trees.delete(name)
  }

  /**
   * The tree: the one kept, when still for the current generation (`position`), else built from
   * `read` (the leaves and position in one read transaction) and kept if `claimed` and no write
   * overlapped.
   */
  async get(
    name: string,
    claimed: () => boolean,
    position: () => Promise<{ seq: Seq; gen: number }>,
    read: () => Promise<{ seq: Seq; gen: number; leaves: DigestLeaf[] }>,
  ): Promise<{ seq: Seq; tree: DigestTree }> {
    const quiet = this.inFlight === 0
    const begun = this.begun
    const unchanged = (): boolean => quiet && this.inFlight === 0 && this.begun === begun && claimed()
    const cached = this.trees.get(name)
    if (cached !== undefined) {
      const r = await position()
      if (unchanged() && this.trees.get(name) === cached && r.gen === cached.gen) return { seq: r.seq, tree: cached.tree }
    }
    const { seq, gen, leaves } = await read()
    const tree = new DigestTree(leaves)
    if (unchanged()) this.trees.set(name, { gen, tree })
    return { seq, tree }
  }
}
