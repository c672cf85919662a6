// Walking a persistent-data btree: leaves in key order, every node checked on the way (its
// validator, key order within it and against the range its parent gives it, one height for all
// leaves, no block twice on a path, no more nodes than the device has blocks). Memory is the path
// from the root: at most MAX_BTREE_DEPTH nodes.
import { type BtreeNode, ThinMetadataError, decodeBtreeNode } from '../../structs/index.js';
import type { MetadataBlocks } from './blocks.js';

/**
 * Deeper than any real tree: 16 GiB of metadata (the kernel's THIN_METADATA_MAX_SECTORS) is 2^22
 * blocks, and a node holds tens to hundreds of entries.
 */
export const MAX_BTREE_DEPTH = 32;

const BTREE = 'btree';

/** Keys of `node` strictly increasing and within [lo, hi) (hi = Infinity: none). */
export function checkNodeKeys(node: BtreeNode, lo: number, hi: number): void {
  let prev = -1;
  for (let i = 0; i < node.nrEntries; i++) {
    const k = node.key(i);
    if (k <= prev) throw new ThinMetadataError(node.blocknr, 'node_header', `keys[${i}]`, `${k} does not follow ${prev}`);
    prev = k;
  }
  if (node.nrEntries > 0) {
    const first = node.key(0);
    if (first < lo)
      throw new ThinMetadataError(node.blocknr, 'node_header', 'keys[0]', `${first} is below ${lo}, where its parent puts this node`);
    if (prev >= hi) {
      throw new ThinMetadataError(
        node.blocknr,
        'node_header',
        `keys[${node.nrEntries - 1}]`,
        `${prev} is not below ${hi}, the next key in its parent`,
      );
    }
  }
}

/** Only a root may be empty (an empty tree): the kernel merges or removes any other node that empties. */
export function emptyBelowRoot(blocknr: number): ThinMetadataError {
  return new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'an empty node below the root');
}

interface Frame {
  node: BtreeNode;
  next: number;
  hi: number;
}

/**
 * Visits every entry of the tree at `root` in key order: `visit(key, leaf, i)`. Leaves hold
 * `valueSize`-byte values. `what` names the tree in errors (e.g. `device details tree`).
 */
export function walkBtree(
  blocks: MetadataBlocks,
  root: number,
  valueSize: number,
  visit: (key: number, leaf: BtreeNode, i: number) => void,
): void {
  walkBtreeLeaves(blocks, root, valueSize, (leaf) => {
    for (let i = 0; i < leaf.nrEntries; i++) visit(leaf.key(i), leaf, i);
  });
}

/** As walkBtree, one call per leaf (in key order), for callers that loop over entries themselves. */
export function walkBtreeLeaves(blocks: MetadataBlocks, root: number, valueSize: number, visitLeaf: (leaf: BtreeNode) => void): void {
  walkBtreeNodes(blocks, root, valueSize, (node) => {
    if (node.leaf) visitLeaf(node);
  });
}

/**
 * Every node of the tree, checked, in pre-order (a parent before its children, leaves in key
 * order), with its depth (the root is 0): what a checker needs to count the blocks a tree uses.
 */
export function walkBtreeNodes(
  blocks: MetadataBlocks,
  root: number,
  valueSize: number,
  visitNode: (node: BtreeNode, depth: number) => void,
): void {
  const stack: Frame[] = [];
  let leafDepth = -1;
  let visited = 0;
  let lastKey = -1;
  const enter = (blocknr: number, lo: number, hi: number, parent: number): void => {
    if (++visited > blocks.nrBlocks) {
      throw new ThinMetadataError(blocknr, BTREE, 'blocknr', `more nodes than the device's ${blocks.nrBlocks} blocks: a cycle`);
    }
    for (const f of stack) {
      if (f.node.blocknr === blocknr)
        throw new ThinMetadataError(parent, BTREE, 'blocknr', `child ${blocknr} is its own ancestor: a cycle`);
    }
    const depth = stack.length;
    if (depth >= MAX_BTREE_DEPTH) throw new ThinMetadataError(blocknr, BTREE, 'depth', `deeper than ${MAX_BTREE_DEPTH} levels`);
    const node = decodeBtreeNode(blocks.read(blocknr), blocknr, valueSize);
    checkNodeKeys(node, lo, hi);
    if (depth > 0 && node.nrEntries === 0) throw emptyBelowRoot(blocknr);
    if (node.leaf) {
      if (leafDepth === -1) leafDepth = depth;
      else if (leafDepth !== depth)
        throw new ThinMetadataError(blocknr, BTREE, 'flags', `a leaf at depth ${depth}, others at ${leafDepth}`);
      if (node.nrEntries > 0) {
        const first = node.key(0);
        if (first <= lastKey)
          throw new ThinMetadataError(blocknr, 'node_header', 'keys[0]', `${first} does not follow ${lastKey} of the leaf before`);
        lastKey = node.key(node.nrEntries - 1);
      }
      visitNode(node, depth);
      return;
    }
    if (leafDepth !== -1 && depth >= leafDepth) {
      throw new ThinMetadataError(blocknr, BTREE, 'flags', `an internal node at depth ${depth}, leaves at ${leafDepth}`);
    }
    if (node.nrEntries === 0) throw new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'an internal node with no entries');
    visitNode(node, depth);
    stack.push({ node, next: 0, hi });
  };

  enter(root, 0, Number.POSITIVE_INFINITY, root);
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.next >= f.node.nrEntries) {
      stack.pop();
      continue;
    }
    const i = f.next++;
    const hi = i + 1 < f.node.nrEntries ? f.node.key(i + 1) : f.hi;
    enter(f.node.child(i), f.node.key(i), hi, f.node.blocknr);
  }
}

/** The entry with `key` (leaf and index), or null; only the nodes on the way down are read. */
export function btreeLookup(
  blocks: MetadataBlocks,
  root: number,
  valueSize: number,
  key: number,
): { leaf: BtreeNode; index: number } | null {
  let blocknr = root;
  let lo = 0;
  let hi = Number.POSITIVE_INFINITY;
  for (let depth = 0; ; depth++) {
    if (depth >= MAX_BTREE_DEPTH) throw new ThinMetadataError(blocknr, BTREE, 'depth', `deeper than ${MAX_BTREE_DEPTH} levels`);
    const node = decodeBtreeNode(blocks.read(blocknr), blocknr, valueSize);
    checkNodeKeys(node, lo, hi);
    // lower_bound: the last entry whose key is <= key.
    let a = 0;
    let b = node.nrEntries;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (node.key(m) <= key) a = m + 1;
      else b = m;
    }
    const i = a - 1;
    if (node.leaf) return i >= 0 && node.key(i) === key ? { leaf: node, index: i } : null;
    if (node.nrEntries === 0) throw new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'an internal node with no entries');
    if (i < 0) return null;
    lo = node.key(i);
    if (i + 1 < node.nrEntries) hi = node.key(i + 1);
    blocknr = node.child(i);
  }
}
