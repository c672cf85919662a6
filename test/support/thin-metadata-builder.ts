// Builds dm-thin metadata images block by block, by name, with correct checksums unless told
// otherwise: superblocks, btree nodes of any shape (including lying ones), device details,
// block_time values, space map index and bitmap blocks. Tests make trees the kernel would write
// and trees it never would (cycles, wrong counts, unsorted keys, blocks past the end).
import {
  BITMAP_CSUM_XOR,
  BTREE_CSUM_XOR,
  DISK_BITMAP_HEADER_SIZE,
  INDEX_CSUM_XOR,
  INTERNAL_NODE,
  LEAF_NODE,
  MAX_METADATA_BITMAPS,
  NODE_HEADER_SIZE,
  SUPERBLOCK_CSUM_XOR,
  THIN_METADATA_BLOCK_SIZE,
  THIN_SUPERBLOCK_MAGIC,
  blockChecksum,
  btreeMaxEntries,
  type IndexEntry,
  type SpaceMapRoot,
} from '../../src/structs/index.js';
import { type MetadataBlocks, memoryMetadataBlocks } from '../../src/thin/metadata/index.js';

const BS = THIN_METADATA_BLOCK_SIZE;

export function le64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

export function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

/** disk_device_details. */
export function details(
  d: { mappedBlocks?: number | bigint; transactionId?: bigint; creationTime?: number; snapshottedTime?: number } = {},
): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(d.mappedBlocks ?? 0), true);
  v.setBigUint64(8, d.transactionId ?? 0n, true);
  v.setUint32(16, d.creationTime ?? 0, true);
  v.setUint32(20, d.snapshottedTime ?? 0, true);
  return b;
}

/** A mapping leaf value: (data_block << 24) | time. */
export function blockTime(dataBlock: number, time = 0): Uint8Array {
  return le64((BigInt(dataBlock) << 24n) | BigInt(time & 0xffffff));
}

/** Writes csum (and blocknr at 8) the way the kernel's prepare_for_write does. */
export function seal(block: Uint8Array, blocknr: number, xor: number): Uint8Array {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  v.setBigUint64(8, BigInt(blocknr), true);
  v.setUint32(0, blockChecksum(block, xor), true);
  return block;
}

export interface NodeOptions {
  /** Default: the kernel's calc_max_entries for the value size. */
  maxEntries?: number;
  /** Default: the real count. */
  nrEntries?: number;
  /** Default: the size of the values given (8 for internal nodes). */
  valueSize?: number;
  flags?: number;
  /** Leave the checksum wrong. */
  badCsum?: boolean;
  /** The blocknr field, when it should lie. */
  blocknrField?: number;
}

export interface SuperblockFields {
  flags?: number;
  version?: number;
  time?: number;
  transactionId?: bigint;
  heldRoot?: number;
  dataSpaceMapRoot?: Partial<SpaceMapRoot>;
  metadataSpaceMapRoot?: Partial<SpaceMapRoot>;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  dataBlockSize?: number;
  metadataBlockSize?: number;
  metadataNrBlocks?: number;
  compatFlags?: number;
  compatRoFlags?: number;
  incompatFlags?: number;
  magic?: bigint;
  badCsum?: boolean;
  blocknrField?: number;
}

export class MetadataImage {
  private readonly blocks = new Map<number, Uint8Array>();
  private next: number;

  constructor(
    /** Size of the image in blocks (reads past it fail). */
    public nrBlocks = 64,
    firstFree = 1,
  ) {
    this.next = firstFree;
  }

  /** A fresh block number (grows the image if needed). */
  alloc(): number {
    const b = this.next++;
    if (b >= this.nrBlocks) this.nrBlocks = b + 1;
    return b;
  }

  put(blocknr: number, block: Uint8Array): number {
    if (block.length !== BS) throw new Error(`a block is ${BS} bytes`);
    this.blocks.set(blocknr, block);
    if (blocknr >= this.nrBlocks) this.nrBlocks = blocknr + 1;
    return blocknr;
  }

  get(blocknr: number): Uint8Array {
    const b = this.blocks.get(blocknr);
    if (!b) throw new Error(`no block ${blocknr} was written`);
    return b;
  }

  superblock(f: SuperblockFields, at = 0): number {
    const b = new Uint8Array(BS);
    const v = new DataView(b.buffer);
    v.setUint32(4, f.flags ?? 0, true);
    for (let i = 0; i < 16; i++) b[16 + i] = i + 1;
    v.setBigUint64(32, f.magic ?? THIN_SUPERBLOCK_MAGIC, true);
    v.setUint32(40, f.version ?? 2, true);
    v.setUint32(44, f.time ?? 0, true);
    v.setBigUint64(48, f.transactionId ?? 0n, true);
    v.setBigUint64(56, BigInt(f.heldRoot ?? 0), true);
    const sm = (off: number, r: Partial<SpaceMapRoot> | undefined) => {
      v.setBigUint64(off, BigInt(r?.nrBlocks ?? 0), true);
      v.setBigUint64(off + 8, BigInt(r?.nrAllocated ?? 0), true);
      v.setBigUint64(off + 16, BigInt(r?.bitmapRoot ?? 0), true);
      v.setBigUint64(off + 24, BigInt(r?.refCountRoot ?? 0), true);
    };
    sm(64, f.dataSpaceMapRoot ?? { nrBlocks: 1 << 16 });
    sm(192, f.metadataSpaceMapRoot ?? { nrBlocks: this.nrBlocks });
    v.setBigUint64(320, BigInt(f.dataMappingRoot), true);
    v.setBigUint64(328, BigInt(f.deviceDetailsRoot), true);
    v.setUint32(336, f.dataBlockSize ?? 128, true);
    v.setUint32(340, f.metadataBlockSize ?? 8, true);
    v.setBigUint64(344, BigInt(f.metadataNrBlocks ?? this.nrBlocks), true);
    v.setUint32(352, f.compatFlags ?? 0, true);
    v.setUint32(356, f.compatRoFlags ?? 0, true);
    v.setUint32(360, f.incompatFlags ?? 0, true);
    this.finish(b, at, SUPERBLOCK_CSUM_XOR, f.badCsum, f.blocknrField);
    return this.put(at, b);
  }

  /** A btree node with `entries` ([key, value bytes]); keys are written in the order given. */
  node(
    kind: 'leaf' | 'internal',
    entries: readonly (readonly [number | bigint, Uint8Array])[],
    opts: NodeOptions = {},
    at = this.alloc(),
  ): number {
    const valueSize = opts.valueSize ?? (kind === 'internal' ? 8 : (entries[0]?.[1].length ?? 8));
    const realSize = kind === 'internal' ? 8 : (entries[0]?.[1].length ?? valueSize);
    const maxEntries = opts.maxEntries ?? btreeMaxEntries(valueSize);
    const b = new Uint8Array(BS);
    const v = new DataView(b.buffer);
    v.setUint32(4, opts.flags ?? (kind === 'leaf' ? LEAF_NODE : INTERNAL_NODE), true);
    v.setUint32(16, opts.nrEntries ?? entries.length, true);
    v.setUint32(20, maxEntries, true);
    v.setUint32(24, valueSize, true);
    const valueBase = NODE_HEADER_SIZE + 8 * maxEntries;
    entries.forEach(([key, value], i) => {
      if (NODE_HEADER_SIZE + 8 * (i + 1) <= BS) v.setBigUint64(NODE_HEADER_SIZE + 8 * i, BigInt(key), true);
      const at2 = valueBase + realSize * i;
      if (at2 + value.length <= BS) b.set(value, at2);
    });
    this.finish(b, at, BTREE_CSUM_XOR, opts.badCsum, opts.blocknrField);
    return this.put(at, b);
  }

  leaf(entries: readonly (readonly [number | bigint, Uint8Array])[], opts: NodeOptions = {}, at?: number): number {
    return this.node('leaf', entries, opts, at);
  }

  internal(children: readonly (readonly [number | bigint, number])[], opts: NodeOptions = {}, at?: number): number {
    return this.node(
      'internal',
      children.map(([k, c]) => [k, le64(c)] as const),
      opts,
      at,
    );
  }

  /**
   * A balanced tree of sorted `entries` as the kernel shapes one: leaves of up to `fanout`
   * entries, internal levels above them until one root. Returns the root.
   */
  tree(entries: readonly (readonly [number, Uint8Array])[], fanout = 0, valueSize = entries[0]?.[1].length ?? 8): number {
    const leafMax = fanout || btreeMaxEntries(valueSize);
    if (entries.length === 0) return this.leaf([], { valueSize });
    let level: [number, number][] = [];
    for (let i = 0; i < entries.length; i += leafMax) {
      const chunk = entries.slice(i, i + leafMax);
      level.push([chunk[0]![0], this.leaf(chunk)]);
    }
    const internalMax = fanout || btreeMaxEntries(8);
    while (level.length > 1) {
      const up: [number, number][] = [];
      for (let i = 0; i < level.length; i += internalMax) {
        const chunk = level.slice(i, i + internalMax);
        up.push([chunk[0]![0], this.internal(chunk)]);
      }
      level = up;
    }
    return level[0]![1];
  }

  /** disk_metadata_index with `entries` (the rest zero). */
  metadataIndex(entries: readonly IndexEntry[], opts: { badCsum?: boolean; blocknrField?: number } = {}, at = this.alloc()): number {
    const b = new Uint8Array(BS);
    const v = new DataView(b.buffer);
    entries.slice(0, MAX_METADATA_BITMAPS).forEach((e, i) => {
      v.setBigUint64(16 + 16 * i, BigInt(e.blocknr), true);
      v.setUint32(24 + 16 * i, e.nrFree, true);
      v.setUint32(28 + 16 * i, e.noneFreeBefore, true);
    });
    this.finish(b, at, INDEX_CSUM_XOR, opts.badCsum, opts.blocknrField);
    return this.put(at, b);
  }

  /** A bitmap block holding `counts` (0..3 each) from entry 0. */
  bitmap(counts: readonly number[], opts: { badCsum?: boolean; blocknrField?: number } = {}, at = this.alloc()): number {
    const b = new Uint8Array(BS);
    counts.forEach((c, e) => {
      const bit = 2 * e;
      const byte = DISK_BITMAP_HEADER_SIZE + (bit >>> 3);
      const shift = bit & 7;
      if (c & 2) b[byte]! |= 1 << shift;
      if (c & 1) b[byte]! |= 1 << (shift + 1);
    });
    this.finish(b, at, BITMAP_CSUM_XOR, opts.badCsum, opts.blocknrField);
    return this.put(at, b);
  }

  private finish(b: Uint8Array, at: number, xor: number, badCsum?: boolean, blocknrField?: number): void {
    seal(b, at, xor);
    if (blocknrField !== undefined) {
      new DataView(b.buffer).setBigUint64(8, BigInt(blocknrField), true);
      if (!badCsum) new DataView(b.buffer).setUint32(0, blockChecksum(b, xor), true);
    }
    if (badCsum) b[0]! ^= 0xff;
  }

  /** The whole image: unwritten blocks are zero. */
  image(): Uint8Array {
    const out = new Uint8Array(this.nrBlocks * BS);
    for (const [n, b] of this.blocks) if (n < this.nrBlocks) out.set(b, n * BS);
    return out;
  }

  reader(): MetadataBlocks {
    return memoryMetadataBlocks(this.image());
  }
}

export interface PoolDevice {
  thinId: number;
  mappings?: readonly (readonly [number, number, number?])[];
  /** Use this mapping tree root instead of building one from `mappings`. */
  root?: number;
  details?: Parameters<typeof details>[0];
}

/** A whole pool: details tree, two-level mapping tree and superblock. Returns the device roots. */
export function buildPool(
  img: MetadataImage,
  devices: readonly PoolDevice[],
  sb: Partial<SuperblockFields> = {},
  fanout = 0,
): Map<number, number> {
  const roots = new Map<number, number>();
  const sorted = [...devices].sort((a, b) => a.thinId - b.thinId);
  for (const d of sorted) {
    const root =
      d.root ??
      img.tree(
        (d.mappings ?? []).map(([vb, db, t]) => [vb, blockTime(db, t ?? 0)] as const),
        fanout,
      );
    roots.set(d.thinId, root);
  }
  const top = img.tree(
    sorted.map((d) => [d.thinId, le64(roots.get(d.thinId)!)] as const),
    fanout,
  );
  const det = img.tree(
    sorted.map((d) => [d.thinId, details({ mappedBlocks: d.mappings?.length ?? 0, ...d.details })] as const),
    fanout,
    24,
  );
  img.superblock({ dataMappingRoot: top, deviceDetailsRoot: det, ...sb });
  return roots;
}
