import type { DigestLeaf } from '../store/store.js'
import { DIGEST_BITS, addHash } from './row-hash.js'

/**
 * The digest as a tree for reconciliation: 2^16 leaves (DIGEST_BITS) grouped 16 to a node, so
 * level 0 is the root, level 1 has 16 nodes, … level 4 (TREE_DEPTH) the leaves themselves. Node
 * `i` of level `l` covers the leaves whose bucket starts with the `4·l` bits of `i`. A node's count
 * and sum are those of its leaves (sum mod 2^128), so both sides compute the same tree from their
 * leaves and compare it top-down, one level per round trip.
 */
export const FANOUT = 16
export const TREE_DEPTH = DIGEST_BITS / 4

export interface DigestNode {
  count: number
  sum: bigint
}

export const EMPTY_NODE: Readonly<DigestNode> = Object.freeze({ count: 0, sum: 0n })

export function nodesAt(level: number): number {
  return FANOUT ** level
}

export function isNodeRef(level: unknown, index: unknown): boolean {
  return (
    Number.isSafeInteger(level) &&
    (level as number) >= 0 &&
    (level as number) <= TREE_DEPTH &&
    Number.isSafeInteger(index) &&
    (index as number) >= 0 &&
    (index as number) < nodesAt(level as number)
  )
}

/** The leaf buckets under node `index` of `level`. */
export function leafRange(level: number, index: number): { first: number; end: number } {
  const span = FANOUT ** (TREE_DEPTH - level)
  return { first: index * span, end: (index + 1) * span }
}

export function sameNode(a: DigestNode, b: DigestNode): boolean {
  return a.count === b.count && a.sum === b.sum
}

/** Every node of the tree, built once from a side's non-empty leaves (a few ms for 65,536 leaves). */
export class DigestTree {
  private readonly levels: Array<Map<number, DigestNode>> = []

  constructor(leaves: Iterable<DigestLeaf>) {
    for (let l = 0; l <= TREE_DEPTH; l++) this.levels.push(new Map())
    const bottom = this.levels[TREE_DEPTH] as Map<number, DigestNode>
    for (const leaf of leaves) if (leaf.count !== 0 || leaf.sum !== 0n) bottom.set(leaf.bucket, { count: leaf.count, sum: leaf.sum })
    for (let l = TREE_DEPTH; l > 0; l--) {
      const up = this.levels[l - 1] as Map<number, DigestNode>
      for (const [i, node] of this.levels[l] as Map<number, DigestNode>) {
        const parent = Math.floor(i / FANOUT)
        const p = up.get(parent)
        if (p === undefined) up.set(parent, { count: node.count, sum: node.sum })
        else {
          p.count += node.count
          p.sum = addHash(p.sum, node.sum)
        }
      }
    }
  }

  node(level: number, index: number): DigestNode {
    return this.levels[level]?.get(index) ?? EMPTY_NODE
  }

  get root(): DigestNode {
    return this.node(0, 0)
  }

  /** The 16 children of node `index` of `level` (level < TREE_DEPTH). */
  children(level: number, index: number): DigestNode[] {
    const out: DigestNode[] = []
    for (let c = 0; c < FANOUT; c++) out.push(this.node(level + 1, index * FANOUT + c))
    return out
  }
}

/** Checks that children add up to their parent: a tampered or torn answer does not. */
export function childrenAddUp(parent: DigestNode, children: readonly DigestNode[]): boolean {
  let count = 0
  let sum = 0n
  for (const c of children) {
    count += c.count
    sum = addHash(sum, c.sum)
  }
  return count === parent.count && sum === parent.sum
}
