// Reading a pool's thin devices from its metadata: the device details tree, and the two-level
// mapping tree (thin id -> the root of that device's tree of virtual block -> block_time).
import { THIN_ID_MAX } from '../../dm/index.js';
import {
  type BtreeNode,
  DISK_DEVICE_DETAILS_SIZE,
  THIN_SUPERBLOCK_LOCATION,
  ThinMetadataError,
  type ThinSuperblock,
  decodeBlockTime,
  decodeBtreeNode,
  decodeDeviceDetails,
  decodeThinSuperblock,
} from '../../structs/index.js';
import { type MetadataBlocks, pastTheEnd } from './blocks.js';
import { MAX_BTREE_DEPTH, btreeLookup, checkNodeKeys, walkBtree, walkBtreeLeaves } from './btree.js';

export interface ThinDeviceInfo {
  thinId: number;
  mappedBlocks: number;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
}

/** Counted from the mapping trees: a data block mapped more than once (by any device) is shared. */
export interface ThinDeviceUsage extends ThinDeviceInfo {
  exclusiveBlocks: number;
  sharedBlocks: number;
}

export interface ThinMetadata {
  superblock: ThinSuperblock;
  /** The superblock whose roots were read (held copy or block 0). */
  roots: ThinSuperblock;
  /** Ascending thinId. */
  devices: ThinDeviceInfo[];
}

/** readThinUsage's answer: ThinMetadata whose devices carry their usage. */
export interface ThinUsage extends ThinMetadata {
  devices: ThinDeviceUsage[];
}

export interface ReadOptions {
  /** 'held' reads the metadata snapshot's roots (reserve_metadata_snap); default 'superblock'. */
  root?: 'superblock' | 'held';
}

/** The leaf value of the mapping tree's bottom level and of its top level: le64. */
const LE64_SIZE = 8;
/** block_time keeps 40 bits of data block. */
const DATA_BLOCK_LIMIT = 2 ** 40;
/** The kernel's THIN_FEATURE_INCOMPAT_SUPP: no incompatible feature is defined. */
const THIN_FEATURE_INCOMPAT_SUPP = 0;

function readRoots(blocks: MetadataBlocks, opts: ReadOptions): { superblock: ThinSuperblock; roots: ThinSuperblock } {
  const superblock = decodeThinSuperblock(blocks.read(THIN_SUPERBLOCK_LOCATION), THIN_SUPERBLOCK_LOCATION);
  const unsupported = superblock.incompatFlags & ~THIN_FEATURE_INCOMPAT_SUPP;
  if (unsupported !== 0) {
    throw new ThinMetadataError(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', 'incompat_flags', `unsupported features ${unsupported}`);
  }
  if ((opts.root ?? 'superblock') === 'superblock') return { superblock, roots: superblock };
  if (superblock.heldRoot === 0) {
    throw new ThinMetadataError(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', 'held_root', 'no metadata snapshot is held');
  }
  if (superblock.heldRoot === THIN_SUPERBLOCK_LOCATION) {
    throw new ThinMetadataError(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', 'held_root', 'points at the superblock itself');
  }
  return { superblock, roots: decodeThinSuperblock(blocks.read(superblock.heldRoot), superblock.heldRoot) };
}

function thinIdOf(key: number, leaf: BtreeNode, tree: string): number {
  if (key > THIN_ID_MAX) throw new ThinMetadataError(leaf.blocknr, tree, 'keys', `thin id ${key} is past ${THIN_ID_MAX}`);
  return key;
}

/** The superblock, the roots read (block 0's or the held copy's) and every thin device's details. */
export function readThinDevices(blocks: MetadataBlocks, opts: ReadOptions = {}): ThinMetadata {
  const { superblock, roots } = readRoots(blocks, opts);
  const devices: ThinDeviceInfo[] = [];
  walkBtree(blocks, roots.deviceDetailsRoot, DISK_DEVICE_DETAILS_SIZE, (key, leaf, i) => {
    const thinId = thinIdOf(key, leaf, 'device details tree');
    devices.push({ thinId, ...decodeDeviceDetails(leaf.block, leaf.valueOffset(i), leaf.blocknr) });
  });
  return { superblock, roots, devices };
}

/** The top level of the mapping tree: each thin id's mapping tree root, ascending thin id. */
function readMappingRoots(blocks: MetadataBlocks, roots: ThinSuperblock): { thinId: number; root: number }[] {
  const out: { thinId: number; root: number }[] = [];
  walkBtree(blocks, roots.dataMappingRoot, LE64_SIZE, (key, leaf, i) => {
    out.push({ thinId: thinIdOf(key, leaf, 'data mapping tree'), root: leaf.value64(i) });
  });
  return out;
}

/** Mappings of one thin device in virtual block order. */
export function forEachMapping(
  blocks: MetadataBlocks,
  roots: ThinSuperblock,
  thinId: number,
  visit: (virtualBlock: number, dataBlock: number, time: number) => void,
): void {
  const found = btreeLookup(blocks, roots.dataMappingRoot, LE64_SIZE, thinId);
  if (found === null)
    throw new ThinMetadataError(roots.dataMappingRoot, 'data mapping tree', 'keys', `no mapping tree for thin id ${thinId}`);
  walkBtreeLeaves(blocks, found.leaf.value64(found.index), LE64_SIZE, (leaf) => {
    const base = leaf.nrEntries > 0 ? leaf.valueOffset(0) : 0;
    for (let i = 0; i < leaf.nrEntries; i++) {
      const bt = decodeBlockTime(leaf.block, base + LE64_SIZE * i, leaf.blocknr);
      visit(leaf.key(i), bt.dataBlock, bt.time);
    }
  });
}

/**
 * Per data block, whether it is mapped once or more than once: two bits per block, in pages of up
 * to 2^20 blocks made on first use, so a sparse pool costs what it maps and a small one a page its
 * size.
 */
class DataBlockUse {
  private readonly pageBlocks: number;
  /** Words of a page's first half (mapped at least once); the second half: more than once. */
  private readonly half: number;
  private readonly pages: (Uint32Array | undefined)[];
  constructor(nrBlocks: number) {
    this.pageBlocks = Math.max(32, Math.min(2 ** 20, 2 ** Math.ceil(Math.log2(Math.max(1, nrBlocks)))));
    this.half = this.pageBlocks >>> 5;
    this.pages = new Array(Math.ceil(nrBlocks / this.pageBlocks));
  }
  /** One more mapping of b. */
  inc(b: number): void {
    const p = (b / this.pageBlocks) | 0;
    let page = this.pages[p];
    if (page === undefined) {
      page = new Uint32Array(2 * this.half);
      this.pages[p] = page;
    }
    const o = b - p * this.pageBlocks;
    const w = o >>> 5;
    const bit = 1 << (o & 31);
    if (page[w]! & bit) page[w + this.half]! |= bit;
    else page[w]! |= bit;
  }
  shared(b: number): boolean {
    const p = (b / this.pageBlocks) | 0;
    const page = this.pages[p];
    if (page === undefined) return false;
    const o = b - p * this.pageBlocks;
    return (page[(o >>> 5) + this.half]! & (1 << (o & 31))) !== 0;
  }
}

const ON_PATH = 1;
const DONE = 2;

/**
 * The distinct nodes of all devices' mapping trees. After a snapshot, devices share subtrees, so
 * the trees form a DAG: each distinct node is read and checked once (depth-first, post-order),
 * with per-node facts (height, key span, children) kept by slot so that the checks a parent makes
 * of its child hold for every path to it.
 */
class MappingForest {
  /** Block number -> slot, -1 while unseen. */
  private readonly slotOf: Int32Array;
  private readonly state: number[] = [];
  readonly blocknr: number[] = [];
  readonly leaf: boolean[] = [];
  private readonly height: number[] = [];
  private readonly minKey: number[] = [];
  private readonly maxKey: number[] = [];
  /** Internal nodes: children in kids[kidStart[s], kidStart[s] + kidCount[s]). */
  readonly kidStart: number[] = [];
  readonly kidCount: number[] = [];
  readonly kids: number[] = [];
  /** Mappings in the leaf (for a leaf), in the subtree after sum(). */
  readonly entries: number[] = [];
  /** Slots in post-order: children before parents. */
  readonly postOrder: number[] = [];

  constructor(
    private readonly blocks: MetadataBlocks,
    private readonly onLeaf: (node: BtreeNode) => void,
  ) {
    this.slotOf = new Int32Array(blocks.nrBlocks).fill(-1);
  }

  private open(blocknr: number, from: number): { slot: number; node: BtreeNode | null } {
    if (!Number.isSafeInteger(blocknr) || blocknr < 0 || blocknr >= this.blocks.nrBlocks) {
      throw pastTheEnd(blocknr, this.blocks.nrBlocks);
    }
    const known = this.slotOf[blocknr]!;
    if (known >= 0) {
      if (this.state[known] === ON_PATH)
        throw new ThinMetadataError(from, 'btree', 'blocknr', `child ${blocknr} is its own ancestor: a cycle`);
      return { slot: known, node: null };
    }
    const node = decodeBtreeNode(this.blocks.read(blocknr), blocknr, LE64_SIZE);
    checkNodeKeys(node, 0, Number.POSITIVE_INFINITY);
    const slot = this.state.length;
    this.slotOf[blocknr] = slot;
    this.state.push(ON_PATH);
    this.blocknr.push(blocknr);
    this.leaf.push(node.leaf);
    this.height.push(0);
    this.minKey.push(node.nrEntries > 0 ? node.key(0) : Number.POSITIVE_INFINITY);
    this.maxKey.push(node.nrEntries > 0 ? node.key(node.nrEntries - 1) : Number.NEGATIVE_INFINITY);
    this.kidStart.push(0);
    this.kidCount.push(0);
    this.entries.push(node.leaf ? node.nrEntries : 0);
    if (!node.leaf && node.nrEntries === 0)
      throw new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'an internal node with no entries');
    return { slot, node };
  }

  private finish(slot: number): void {
    this.state[slot] = DONE;
    this.postOrder.push(slot);
  }

  /** Adds the tree at `root` (depth-first, each new node once); returns its slot. */
  add(root: number, from: number): number {
    const top = this.open(root, from);
    if (top.node === null) return top.slot;
    if (top.node.leaf) {
      this.onLeaf(top.node);
      this.finish(top.slot);
      return top.slot;
    }
    const stack: { slot: number; node: BtreeNode; next: number; childHeight: number }[] = [
      { slot: top.slot, node: top.node, next: 0, childHeight: -1 },
    ];
    // A node's children are appended to `kids` together when it is done, so they are contiguous.
    const pendingKids: number[][] = [[]];
    while (stack.length > 0) {
      const f = stack[stack.length - 1]!;
      if (f.next >= f.node.nrEntries) {
        stack.pop();
        const kids = pendingKids.pop()!;
        this.kidStart[f.slot] = this.kids.length;
        this.kidCount[f.slot] = kids.length;
        for (const k of kids) this.kids.push(k);
        this.height[f.slot] = f.childHeight + 1;
        this.finish(f.slot);
        if (stack.length > 0) this.adopt(stack[stack.length - 1]!, pendingKids[pendingKids.length - 1]!, f.slot);
        continue;
      }
      const i = f.next++;
      if (stack.length >= MAX_BTREE_DEPTH)
        throw new ThinMetadataError(f.node.blocknr, 'btree', 'depth', `deeper than ${MAX_BTREE_DEPTH} levels`);
      const { slot, node } = this.open(f.node.child(i), f.node.blocknr);
      if (node === null || node.leaf) {
        if (node !== null) {
          this.onLeaf(node);
          this.finish(slot);
        }
        this.adopt(f, pendingKids[pendingKids.length - 1]!, slot);
        continue;
      }
      stack.push({ slot, node, next: 0, childHeight: -1 });
      pendingKids.push([]);
    }
    return top.slot;
  }

  /** Child `slot` (done) of frame f: same height as its siblings, keys within f's range for it. */
  private adopt(f: { slot: number; node: BtreeNode; next: number; childHeight: number }, kids: number[], slot: number): void {
    const i = f.next - 1;
    const h = this.height[slot]!;
    if (f.childHeight === -1) f.childHeight = h;
    else if (f.childHeight !== h) {
      throw new ThinMetadataError(
        f.node.blocknr,
        'btree',
        'flags',
        `child ${i} (block ${this.blocknr[slot]}) is ${h} levels above its leaves, its siblings ${f.childHeight}`,
      );
    }
    const lo = f.node.key(i);
    if (this.minKey[slot]! < lo) {
      throw new ThinMetadataError(
        this.blocknr[slot]!,
        'node_header',
        'keys[0]',
        `${this.minKey[slot]} is below ${lo}, where block ${f.node.blocknr} puts it`,
      );
    }
    if (i + 1 < f.node.nrEntries) {
      const hi = f.node.key(i + 1);
      if (this.maxKey[slot]! >= hi) {
        throw new ThinMetadataError(
          this.blocknr[slot]!,
          'node_header',
          'keys',
          `${this.maxKey[slot]} is not below ${hi}, the next key in block ${f.node.blocknr}`,
        );
      }
    }
    this.minKey[f.slot] = Math.min(this.minKey[f.slot]!, this.minKey[slot]!);
    this.maxKey[f.slot] = Math.max(this.maxKey[f.slot]!, this.maxKey[slot]!);
    kids.push(slot);
  }

  /** Sums `perLeaf` over each subtree (post-order), giving per-slot totals. */
  sum(perLeaf: number[]): number[] {
    const total: number[] = new Array(this.blocknr.length).fill(0);
    for (const s of this.postOrder) {
      if (this.leaf[s]) total[s] = perLeaf[s]!;
      else {
        let t = 0;
        const end = this.kidStart[s]! + this.kidCount[s]!;
        for (let k = this.kidStart[s]!; k < end; k++) t += total[this.kids[k]!]!;
        total[s] = t;
      }
    }
    return total;
  }
}

/**
 * Devices with their mapped blocks split into exclusive (the data block is mapped once in the
 * whole pool) and shared, counted from the mapping trees as thin_ls counts them. Each distinct node
 * of the mapping trees is checked once and each distinct leaf's entries read twice, however many
 * snapshots share it.
 */
export function readThinUsage(blocks: MetadataBlocks, opts: ReadOptions = {}): ThinUsage {
  const meta = readThinDevices(blocks, opts);
  const tops = readMappingRoots(blocks, meta.roots);
  checkSameDevices(meta, tops);
  // The data space map's size is block 0's: a held copy's space map roots are zeroed.
  const nrDataBlocks = meta.superblock.dataSpaceMapRoot.nrBlocks;
  if (nrDataBlocks > DATA_BLOCK_LIMIT) {
    throw new ThinMetadataError(
      THIN_SUPERBLOCK_LOCATION,
      'thin_disk_superblock',
      'data_space_map_root.nr_blocks',
      `${nrDataBlocks} blocks, more than block_time's 40 bits address`,
    );
  }
  const use = new DataBlockUse(nrDataBlocks);
  const forEachDataBlock = (leaf: BtreeNode, fn: (dataBlock: number) => void): void => {
    if (leaf.nrEntries === 0) return;
    const v = new DataView(leaf.block.buffer, leaf.block.byteOffset, leaf.block.byteLength);
    let at = leaf.valueOffset(0);
    for (let i = 0; i < leaf.nrEntries; i++, at += LE64_SIZE) {
      const b = v.getUint32(at + 4, true) * 256 + (v.getUint32(at, true) >>> 24);
      if (b >= nrDataBlocks) {
        throw new ThinMetadataError(
          leaf.blocknr,
          'block_time',
          `values[${i}]`,
          `data block ${b} is past the data device's ${nrDataBlocks} blocks`,
        );
      }
      fn(b);
    }
  };

  // Pass 1: every distinct node once; each distinct leaf's data blocks counted once.
  const forest = new MappingForest(blocks, (leaf) => forEachDataBlock(leaf, (b) => use.inc(b)));
  const rootSlots = tops.map((t) => forest.add(t.root, meta.roots.dataMappingRoot));

  // How many devices reach each node: roots first, then parents before children (reverse
  // post-order), saturating at 2.
  const reach: number[] = new Array(forest.blocknr.length).fill(0);
  for (const s of rootSlots) reach[s] = Math.min(2, reach[s]! + 1);
  for (let p = forest.postOrder.length - 1; p >= 0; p--) {
    const s = forest.postOrder[p]!;
    if (forest.leaf[s] || reach[s] === 0) continue;
    const end = forest.kidStart[s]! + forest.kidCount[s]!;
    for (let k = forest.kidStart[s]!; k < end; k++) {
      const c = forest.kids[k]!;
      reach[c] = Math.min(2, reach[c]! + reach[s]!);
    }
  }
  const leafNode = (s: number): BtreeNode => decodeBtreeNode(blocks.read(forest.blocknr[s]!), forest.blocknr[s]!, LE64_SIZE);

  // Pass 2: per leaf reached by one device, its mappings whose data block no other mapping uses.
  // A leaf reached by two or more has none; its data blocks need no marking, since one that also
  // appears in another leaf was already counted twice in pass 1.
  const exclusive: number[] = new Array(forest.blocknr.length).fill(0);
  for (const s of forest.postOrder) {
    if (!forest.leaf[s] || reach[s]! > 1) continue;
    let n = 0;
    forEachDataBlock(leafNode(s), (b) => {
      if (!use.shared(b)) n++;
    });
    exclusive[s] = n;
  }
  const exclusiveTotal = forest.sum(exclusive);
  const mappedTotal = forest.sum(forest.entries);
  const devices = meta.devices.map((d, i): ThinDeviceUsage => {
    const s = rootSlots[i]!;
    return { ...d, exclusiveBlocks: exclusiveTotal[s]!, sharedBlocks: mappedTotal[s]! - exclusiveTotal[s]! };
  });
  return { ...meta, devices };
}

function checkSameDevices(meta: ThinMetadata, tops: { thinId: number }[]): void {
  const n = Math.max(meta.devices.length, tops.length);
  for (let i = 0; i < n; i++) {
    const d = meta.devices[i]?.thinId;
    const t = tops[i]?.thinId;
    if (d === t) continue;
    if (t === undefined || (d !== undefined && d < t)) {
      throw new ThinMetadataError(meta.roots.dataMappingRoot, 'data mapping tree', 'keys', `thin id ${d} has details but no mapping tree`);
    }
    throw new ThinMetadataError(
      meta.roots.deviceDetailsRoot,
      'device details tree',
      'keys',
      `thin id ${t} has a mapping tree but no details`,
    );
  }
}
