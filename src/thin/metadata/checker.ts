// The walk's bookkeeping for checkThinMetadata: problems (bounded), blocks seen, and a bounded
// btree visit that reports damage instead of throwing.
import { type BtreeNode, decodeBtreeNode, ThinMetadataError, type ThinSuperblock } from '../../structs/index.js';
import type { MetadataBlocks } from './blocks.js';
import { checkNodeKeys, MAX_BTREE_DEPTH } from './btree.js';

/** One thing wrong: the metadata block it is in (null when it is no one block's) and one line naming the struct, field or thin id. */
export interface MetadataProblem {
  block: number | null;
  what: string;
}

export interface MetadataCheck {
  ok: boolean;
  problems: MetadataProblem[];
  /** Block 0 as decoded; null when it does not decode (then nothing else was checked). */
  superblock: ThinSuperblock | null;
}

/** Past this many problems the rest are only counted, so a wrecked image gives a bounded answer. */
const MAX_PROBLEMS = 1000;

/** Where a btree walk is: its name for messages and the keys its nodes must lie within. */
interface Span {
  what: string;
  lo: number; // keys >= lo
  hi: number; // keys < hi (Infinity: no bound)
}

export class Checker {
  readonly problems: MetadataProblem[] = [];
  private dropped = 0;
  /** References the walk found to each metadata block. */
  readonly refs: Uint32Array;
  /** Mappings (leaf entries) under each btree node, null when the subtree is damaged. */
  private readonly entries = new Map<number, number | null>();
  private readonly onSpine = new Set<number>();

  constructor(
    readonly blocks: MetadataBlocks,
    /** Metadata blocks a reference may name: the device's and the space map's, whichever is fewer. */
    readonly limit: number,
    readonly smNrBlocks: number,
  ) {
    this.refs = new Uint32Array(limit);
  }

  /** Problems found so far, listed or not: callers compare it before and after a step. */
  get found(): number {
    return this.problems.length + this.dropped;
  }

  /** Blocks a walk could not read or trust: past them, references are missing. */
  damaged = 0;

  damage(block: number | null, what: string): void {
    this.damaged++;
    this.problem(block, what);
  }

  problem(block: number | null, what: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ block, what });
    else this.dropped++;
  }

  finish(): MetadataProblem[] {
    if (this.dropped > 0) this.problems.push({ block: null, what: `${this.dropped} more problems not listed` });
    return this.problems;
  }

  /** Counts one reference to b; true the first time (the caller then reads it). */
  reference(b: number, what: string): boolean {
    if (!Number.isSafeInteger(b) || b < 0 || b >= this.limit) {
      const end = b >= this.smNrBlocks ? `metadata space map nr_blocks ${this.smNrBlocks}` : `the device's ${this.blocks.nrBlocks} blocks`;
      this.damage(null, `${what}: block ${b} is past ${end}`);
      return false;
    }
    const c = (this.refs[b] as number) + 1;
    this.refs[b] = c;
    return c === 1;
  }

  read(b: number, what: string): Uint8Array | null {
    try {
      return this.blocks.read(b);
    } catch (e) {
      this.damage(b, `${what}: block ${b} cannot be read: ${(e as Error).message}`);
      return null;
    }
  }

  /** Runs decode over a block, turning the format's errors into problems. */
  decode<T>(b: number, what: string, fn: () => T): T | null {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ThinMetadataError || e instanceof RangeError) {
        this.damage(b, `${what}: ${e.message}`);
        return null;
      }
      throw e;
    }
  }

  /**
   * Walks one btree (one level of a multi-level one) from root, calling leaf() on each leaf the
   * first time it is reached. Returns the number of leaf entries under root, null if damaged.
   */
  walk(root: number, what: string, valueSize: number, leaf: (node: BtreeNode) => void): number | null {
    return this.visit(root, { what, lo: 0, hi: Number.POSITIVE_INFINITY }, valueSize, true, 0, leaf);
  }

  private visit(b: number, span: Span, valueSize: number, isRoot: boolean, depth: number, leaf: (node: BtreeNode) => void): number | null {
    const what = span.what;
    if (!this.reference(b, what)) {
      if (this.onSpine.has(b)) this.damage(b, `${what}: btree node ${b} is its own ancestor`);
      return this.entries.get(b) ?? null;
    }
    if (depth > MAX_BTREE_DEPTH) {
      this.damage(b, `${what}: btree deeper than ${MAX_BTREE_DEPTH} at node ${b}`);
      return null;
    }
    const block = this.read(b, what);
    const node = block && this.decode(b, what, () => decodeBtreeNode(block, b, valueSize));
    if (!node) {
      this.entries.set(b, null);
      return null;
    }
    this.onSpine.add(b);
    try {
      const count = this.node(node, span, valueSize, isRoot, depth, leaf);
      this.entries.set(b, count);
      return count;
    } finally {
      this.onSpine.delete(b);
    }
  }

  private node(
    node: BtreeNode,
    span: Span,
    valueSize: number,
    isRoot: boolean,
    depth: number,
    leaf: (node: BtreeNode) => void,
  ): number | null {
    const b = node.blocknr;
    const what = span.what;
    // As thin_check's btree_node_checker: a node that fails is not descended into.
    const keysInOrder = this.decode(b, what, () => {
      checkNodeKeys(node, span.lo, span.hi);
      return true;
    });
    if (keysInOrder === null) return null;
    const min = Math.floor(node.maxEntries / 3);
    if (!isRoot && node.nrEntries < min) {
      this.damage(b, `${what}: btree node ${b} has ${node.nrEntries} entries, fewer than max_entries/3 = ${min}`);
      return null;
    }
    if (node.leaf) {
      const visited = this.decode(b, what, () => {
        leaf(node);
        return true;
      });
      return visited === null ? null : node.nrEntries;
    }
    let total = 0;
    let sound = true;
    for (let i = 0; i < node.nrEntries; i++) {
      const child = this.decode(b, what, () => node.child(i));
      if (child === null) return null;
      const c = this.visit(
        child,
        { what, lo: node.key(i), hi: i + 1 < node.nrEntries ? node.key(i + 1) : span.hi },
        valueSize,
        false,
        depth + 1,
        leaf,
      );
      if (c === null) sound = false;
      else total += c;
    }
    return sound ? total : null;
  }
}
