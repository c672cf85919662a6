// Counting, per thin device, the mappings whose data block no other mapping uses. After a
// snapshot, devices share subtrees of the mapping tree, so all devices' trees together form a DAG:
// each distinct node is read and checked once, depth-first (post-order), with per-node facts
// (height, key span, children) kept by slot in typed arrays, so that what a parent checks of a
// child holds on every path to it. Then, per distinct leaf, how many devices reach it (roots down,
// in reverse post-order), and subtree sums give each device's totals: the work is the distinct
// nodes and distinct leaf entries, however many snapshots share them.
import {
  BLOCK_TIME_TIME_BITS,
  NODE_HEADER_SIZE,
  DM_SM_METADATA_MAX_BLOCKS,
  LE64_SIZE,
  SAFE_HIGH_WORD_MAX,
  ThinMetadataError,
  decodeBtreeNode,
  le64Number,
} from '../../structs/index.js';
import { type MetadataBlocks, pastTheEnd } from './blocks.js';
import { MAX_BTREE_DEPTH, emptyBelowRoot } from './btree.js';

/** block_time's data block: the high word's bits are worth 2^(32 - 24) each. */
const DATA_BLOCK_HIGH_SCALE = 2 ** (32 - BLOCK_TIME_TIME_BITS);
/** Data blocks of leaves kept in memory for the second pass, at most (32 MiB); past it, leaves are read again. */
const DATA_CACHE_MAX = 2 ** 22;
const DATA_CHUNK_SHIFT = 16;
const DATA_CHUNK = 1 << DATA_CHUNK_SHIFT;
const DATA_CHUNK_MASK = DATA_CHUNK - 1;

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

function grown<T extends Int32Array | Float64Array | Uint8Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(Math.max(need, 2 * a.length, 64));
  b.set(a);
  return b;
}

const LEAF = 1;
const DONE = 2;

/** Entry i of a node's keys or values read as a le64 number; the field is named only on error. */
function u64(v: DataView, at: number, blocknr: number, array: 'keys' | 'values', i: number): number {
  if (v.getUint32(at + 4, true) > SAFE_HIGH_WORD_MAX) le64Number(v, at, blocknr, 'node_header', `${array}[${i}]`);
  return v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
}

export interface DeviceUsageCount {
  /** Mappings counted in the device's tree. */
  mapped: number;
  /** Of those, the ones whose data block is mapped once in the whole pool. */
  exclusive: number;
}

class Forest {
  private readonly slotOf: Int32Array;
  private n = 0;
  private blk = new Float64Array(64);
  private flags = new Uint8Array(64);
  private height = new Uint8Array(64);
  private minKey = new Float64Array(64);
  private maxKey = new Float64Array(64);
  /** Entries: a leaf's mappings; an internal node's children, in kids[kidStart, kidStart + count). */
  private count = new Int32Array(64);
  private kidStart = new Int32Array(64);
  private kids = new Int32Array(64);
  private nKids = 0;
  /**
   * A leaf's data blocks: chunk dataStart >>> DATA_CHUNK_SHIFT of `data`, from dataStart's low bits
   * (a leaf never spans two chunks), or -1: read it again. Chunks, not one growing array, so that
   * nothing is copied as it fills.
   */
  private dataStart = new Int32Array(64);
  private readonly data: Float64Array[] = [];
  private nData = 0;
  private postOrder = new Int32Array(64);
  private nPost = 0;
  // The path of the depth-first walk.
  private readonly stSlot = new Int32Array(MAX_BTREE_DEPTH);
  private readonly stNext = new Int32Array(MAX_BTREE_DEPTH);
  private readonly stChildHeight = new Int32Array(MAX_BTREE_DEPTH);
  /** Where the frame's values (child block numbers) start. */
  private readonly stBase = new Int32Array(MAX_BTREE_DEPTH);
  private readonly stView: DataView[] = [];

  constructor(
    private readonly blocks: MetadataBlocks,
    private readonly use: DataBlockUse,
    private readonly nrDataBlocks: number,
    private readonly dataCacheMax: number,
  ) {
    this.slotOf = new Int32Array(Math.min(blocks.nrBlocks, DM_SM_METADATA_MAX_BLOCKS)).fill(-1);
  }

  private newSlot(blocknr: number): number {
    const s = this.n++;
    if (s >= this.blk.length) {
      const m = s + 1;
      this.blk = grown(this.blk, m);
      this.flags = grown(this.flags, m);
      this.height = grown(this.height, m);
      this.minKey = grown(this.minKey, m);
      this.maxKey = grown(this.maxKey, m);
      this.count = grown(this.count, m);
      this.kidStart = grown(this.kidStart, m);
      this.dataStart = grown(this.dataStart, m);
    }
    this.slotOf[blocknr] = s;
    this.blk[s] = blocknr;
    this.flags[s] = 0;
    this.height[s] = 0;
    return s;
  }

  private finish(s: number): void {
    this.flags[s]! |= DONE;
    if (this.nPost === this.postOrder.length) this.postOrder = grown(this.postOrder, this.nPost + 1);
    this.postOrder[this.nPost++] = s;
  }

  /** Reads and checks a node not seen before; a leaf is done at once, an internal node goes on the path. */
  private open(blocknr: number, depth: number): number {
    const block = this.blocks.read(blocknr);
    const node = decodeBtreeNode(block, blocknr, LE64_SIZE);
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    const nr = node.nrEntries;
    const s = this.newSlot(blocknr);
    let prev = -1;
    for (let i = 0, at = NODE_HEADER_SIZE; i < nr; i++, at += 8) {
      const k = u64(v, at, blocknr, 'keys', i);
      if (k <= prev) throw new ThinMetadataError(blocknr, 'node_header', `keys[${i}]`, `${k} does not follow ${prev}`);
      prev = k;
    }
    this.minKey[s] = nr > 0 ? u64(v, NODE_HEADER_SIZE, blocknr, 'keys', 0) : Number.POSITIVE_INFINITY;
    this.maxKey[s] = nr > 0 ? prev : Number.NEGATIVE_INFINITY;
    this.count[s] = nr;
    const valueBase = nr > 0 ? node.valueOffset(0) : 0;
    if (node.leaf) {
      this.flags[s] = LEAF;
      let start = -1;
      let chunk: Float64Array | undefined;
      if (nr > 0 && this.nData + nr <= this.dataCacheMax) {
        // A leaf that would straddle two chunks starts the next one.
        if ((this.nData & DATA_CHUNK_MASK) + nr > DATA_CHUNK) this.nData = (this.nData | DATA_CHUNK_MASK) + 1;
        const c = this.nData >>> DATA_CHUNK_SHIFT;
        if (c === this.data.length) this.data.push(new Float64Array(DATA_CHUNK));
        chunk = this.data[c];
        start = this.nData;
      }
      this.dataStart[s] = start;
      let d = start & DATA_CHUNK_MASK;
      for (let i = 0, at = valueBase; i < nr; i++, at += LE64_SIZE) {
        const b = this.dataBlockAt(v, at, blocknr, i);
        this.use.inc(b);
        if (chunk !== undefined) chunk[d++] = b;
      }
      if (chunk !== undefined) this.nData += nr;
      this.finish(s);
      return s;
    }
    if (nr === 0) throw new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'an internal node with no entries');
    if (this.nKids + nr > this.kids.length) this.kids = grown(this.kids, this.nKids + nr);
    this.kidStart[s] = this.nKids;
    this.nKids += nr;
    this.stSlot[depth] = s;
    this.stNext[depth] = 0;
    this.stChildHeight[depth] = -1;
    this.stBase[depth] = valueBase;
    this.stView[depth] = v;
    return s;
  }

  private dataBlockAt(v: DataView, at: number, blocknr: number, i: number): number {
    const b = v.getUint32(at + 4, true) * DATA_BLOCK_HIGH_SCALE + (v.getUint32(at, true) >>> BLOCK_TIME_TIME_BITS);
    if (b >= this.nrDataBlocks) {
      throw new ThinMetadataError(
        blocknr,
        'block_time',
        `values[${i}]`,
        `data block ${b} is past the data device's ${this.nrDataBlocks} blocks`,
      );
    }
    return b;
  }

  /** Adds the tree at `root`; returns its slot. `from` names the block that points at it. */
  add(root: number, from: number): number {
    const known = this.lookup(root, from);
    if (known >= 0) return known;
    const top = this.open(root, 0);
    if (this.flags[top]! & LEAF) return top;
    let depth = 0;
    while (depth >= 0) {
      const s = this.stSlot[depth]!;
      const i = this.stNext[depth]!;
      const v = this.stView[depth]!;
      const blocknr = this.blk[s]!;
      if (i >= this.count[s]!) {
        this.height[s] = this.stChildHeight[depth]! + 1;
        this.finish(s);
        depth--;
        if (depth >= 0) this.adopt(depth, s);
        continue;
      }
      this.stNext[depth] = i + 1;
      const child = u64(v, this.stBase[depth]! + 8 * i, blocknr, 'values', i);
      let c = this.lookup(child, blocknr);
      if (c < 0) {
        if (depth + 1 >= MAX_BTREE_DEPTH) throw new ThinMetadataError(child, 'btree', 'depth', `deeper than ${MAX_BTREE_DEPTH} levels`);
        c = this.open(child, depth + 1);
        if (!(this.flags[c]! & LEAF)) {
          depth++;
          continue;
        }
      }
      this.adopt(depth, c);
    }
    return top;
  }

  /** The slot of a block seen before (-1 if not); a block on the current path is a cycle. */
  private lookup(blocknr: number, from: number): number {
    if (!Number.isSafeInteger(blocknr) || blocknr < 0 || blocknr >= this.slotOf.length) throw pastTheEnd(blocknr, this.slotOf.length);
    const s = this.slotOf[blocknr]!;
    if (s >= 0 && !(this.flags[s]! & DONE))
      throw new ThinMetadataError(from, 'btree', 'blocknr', `child ${blocknr} is its own ancestor: a cycle`);
    return s;
  }

  /** Child slot c (done) of the frame at `depth`: its height like its siblings', its keys within the frame's range for it. */
  private adopt(depth: number, c: number): void {
    const s = this.stSlot[depth]!;
    const i = this.stNext[depth]! - 1;
    const v = this.stView[depth]!;
    const blocknr = this.blk[s]!;
    if (this.count[c] === 0) throw emptyBelowRoot(this.blk[c]!);
    const h = this.height[c]!;
    const ch = this.stChildHeight[depth]!;
    if (ch === -1) this.stChildHeight[depth] = h;
    else if (ch !== h) {
      throw new ThinMetadataError(
        blocknr,
        'btree',
        'flags',
        `child ${i} (block ${this.blk[c]}) is ${h} levels above its leaves, its siblings ${ch}`,
      );
    }
    const lo = u64(v, NODE_HEADER_SIZE + 8 * i, blocknr, 'keys', i);
    if (this.minKey[c]! < lo) {
      throw new ThinMetadataError(
        this.blk[c]!,
        'node_header',
        'keys[0]',
        `${this.minKey[c]} is below ${lo}, where block ${blocknr} puts it`,
      );
    }
    if (i + 1 < this.count[s]!) {
      const hi = u64(v, NODE_HEADER_SIZE + 8 * (i + 1), blocknr, 'keys', i + 1);
      if (this.maxKey[c]! >= hi) {
        throw new ThinMetadataError(
          this.blk[c]!,
          'node_header',
          'keys',
          `${this.maxKey[c]} is not below ${hi}, the next key in block ${blocknr}`,
        );
      }
    }
    if (this.minKey[c]! < this.minKey[s]!) this.minKey[s] = this.minKey[c]!;
    if (this.maxKey[c]! > this.maxKey[s]!) this.maxKey[s] = this.maxKey[c]!;
    this.kids[this.kidStart[s]! + i] = c;
  }

  /** Per root: mappings and exclusive mappings of its tree. */
  totals(rootSlots: readonly number[]): DeviceUsageCount[] {
    const n = this.n;
    // How many devices reach each node (saturating at 2): roots, then parents before children.
    const reach = new Uint8Array(n);
    for (const s of rootSlots) reach[s] = Math.min(2, reach[s]! + 1);
    for (let p = this.nPost - 1; p >= 0; p--) {
      const s = this.postOrder[p]!;
      const r = reach[s]!;
      if (this.flags[s]! & LEAF || r === 0) continue;
      const end = this.kidStart[s]! + this.count[s]!;
      for (let k = this.kidStart[s]!; k < end; k++) {
        const c = this.kids[k]!;
        reach[c] = Math.min(2, reach[c]! + r);
      }
    }
    // Per leaf reached by one device: its mappings whose data block no other mapping uses. A leaf
    // reached by two or more has none; its data blocks need no marking, since one that also appears
    // in another leaf was counted twice already.
    const exclusive = new Float64Array(n);
    const mapped = new Float64Array(n);
    for (let p = 0; p < this.nPost; p++) {
      const s = this.postOrder[p]!;
      if (this.flags[s]! & LEAF) {
        mapped[s] = this.count[s]!;
        if (reach[s]! === 1) exclusive[s] = this.exclusiveIn(s);
      } else {
        let e = 0;
        let m = 0;
        const end = this.kidStart[s]! + this.count[s]!;
        for (let k = this.kidStart[s]!; k < end; k++) {
          const c = this.kids[k]!;
          e += exclusive[c]!;
          m += mapped[c]!;
        }
        exclusive[s] = e;
        mapped[s] = m;
      }
    }
    return rootSlots.map((s) => ({ mapped: mapped[s]!, exclusive: exclusive[s]! }));
  }

  private exclusiveIn(s: number): number {
    const nr = this.count[s]!;
    let e = 0;
    const start = this.dataStart[s]!;
    if (start >= 0) {
      const chunk = this.data[start >>> DATA_CHUNK_SHIFT]!;
      const from = start & DATA_CHUNK_MASK;
      for (let i = from; i < from + nr; i++) if (!this.use.shared(chunk[i]!)) e++;
      return e;
    }
    const blocknr = this.blk[s]!;
    const block = this.blocks.read(blocknr);
    const node = decodeBtreeNode(block, blocknr, LE64_SIZE);
    if (node.nrEntries !== nr) throw new ThinMetadataError(blocknr, 'node_header', 'nr_entries', 'changed while it was read');
    const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
    for (let i = 0, at = nr > 0 ? node.valueOffset(0) : 0; i < nr; i++, at += LE64_SIZE) {
      if (!this.use.shared(this.dataBlockAt(v, at, blocknr, i))) e++;
    }
    return e;
  }
}

/**
 * Mapped and exclusive mappings of each mapping tree root (one per thin device, in order); data
 * blocks must be below `nrDataBlocks`. `from` names the block holding the roots, for errors.
 * `dataCacheMax`: leaf data blocks kept for the second pass, at most (past it leaves are read again).
 */
export function countUsage(
  blocks: MetadataBlocks,
  roots: readonly number[],
  nrDataBlocks: number,
  from: number,
  dataCacheMax = DATA_CACHE_MAX,
): DeviceUsageCount[] {
  const forest = new Forest(blocks, new DataBlockUse(nrDataBlocks), nrDataBlocks, dataCacheMax);
  const slots = roots.map((r) => forest.add(r, from));
  return forest.totals(slots);
}
