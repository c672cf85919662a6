// dm-thin's on-disk metadata (persistent-data), decoded from 4096-byte blocks. Layouts and
// constants are the kernel's: drivers/md/dm-thin-metadata.c (thin_disk_superblock,
// disk_device_details, block_time), persistent-data/dm-btree-internal.h and dm-btree-spine.c
// (node_header, node_check), dm-space-map-common.[ch] (disk_sm_root, disk_index_entry,
// disk_metadata_index, disk_bitmap_header, index_check, dm_bitmap_check), dm-block-manager.c
// (dm_bm_checksum). Every decoder takes untrusted bytes: anything the format rules out is a
// ThinMetadataError naming the block, the struct and the field; nothing else escapes.
import { crc32cUpdate } from './crc32c.js';

/** Bytes in a metadata block (the kernel's THIN_METADATA_BLOCK_SIZE is 8 sectors). */
export const THIN_METADATA_BLOCK_SIZE = 4096;
/** The superblock's metadata_block_size, in 512-byte sectors. */
export const THIN_METADATA_BLOCK_SECTORS = THIN_METADATA_BLOCK_SIZE >> 9;
export const THIN_SUPERBLOCK_MAGIC = 27022010n;
export const THIN_SUPERBLOCK_LOCATION = 0;
/** Superblock versions the kernel writes (THIN_VERSION is 2; version 1 pools still open). */
export const THIN_VERSION_MIN = 1;
export const THIN_VERSION_MAX = 2;

export const SUPERBLOCK_CSUM_XOR = 160774;
export const BTREE_CSUM_XOR = 121107;
export const BITMAP_CSUM_XOR = 240779;
export const INDEX_CSUM_XOR = 160478;

/** node_header.flags */
export const INTERNAL_NODE = 1;
export const LEAF_NODE = 2;

export const SPACE_MAP_ROOT_SIZE = 128;
export const NODE_HEADER_SIZE = 32;
export const DISK_DEVICE_DETAILS_SIZE = 24;
export const DISK_INDEX_ENTRY_SIZE = 16;
export const DISK_BITMAP_HEADER_SIZE = 16;
/** disk_metadata_index.index[] */
export const MAX_METADATA_BITMAPS = 255;
/** Two bits per block after the bitmap header. */
export const ENTRIES_PER_BLOCK = (THIN_METADATA_BLOCK_SIZE - DISK_BITMAP_HEADER_SIZE) * 4;
/**
 * DM_SM_METADATA_MAX_BLOCKS: the metadata space map's one index block addresses this many blocks,
 * so no metadata block lies past it (the kernel uses at most THIN_METADATA_MAX_SECTORS of a device).
 */
export const DM_SM_METADATA_MAX_BLOCKS = MAX_METADATA_BITMAPS * ENTRIES_PER_BLOCK;
/** dm-thin-metadata.c THIN_FEATURE_INCOMPAT_SUPP: no incompatible feature is defined. */
export const THIN_FEATURE_INCOMPAT_SUPP = 0;
/** block_time: the low 24 bits are the time, the high 40 the data block. */
export const BLOCK_TIME_TIME_BITS = 24;
export const BLOCK_TIME_TIME_MASK = (1 << BLOCK_TIME_TIME_BITS) - 1;

/** A block (or field) of thin metadata that is not what the format says. */
export class ThinMetadataError extends Error {
  override readonly name = 'ThinMetadataError';
  readonly code = 'EILSEQ';
  constructor(
    /** The metadata block the problem is in (-1 when the caller did not say). */
    readonly block: number,
    /** The kernel struct, e.g. `node_header`, `thin_disk_superblock`. */
    readonly struct: string,
    /** Its field, e.g. `nr_entries`, `csum`. */
    readonly field: string,
    reason: string,
  ) {
    super(`thin metadata block ${block}: ${struct}.${field}: ${reason}`);
  }
}

function need(buf: Uint8Array, offset: number, size: number, block: number, struct: string): DataView {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > buf.length) {
    throw new ThinMetadataError(block, struct, '(size)', `${size} bytes at offset ${offset} do not fit in ${buf.length}`);
  }
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function wholeBlock(block: Uint8Array, blocknr: number, struct: string): DataView {
  if (block.length !== THIN_METADATA_BLOCK_SIZE) {
    throw new ThinMetadataError(blocknr, struct, '(size)', `a block is ${THIN_METADATA_BLOCK_SIZE} bytes, not ${block.length}`);
  }
  return new DataView(block.buffer, block.byteOffset, block.byteLength);
}

/** The high 32 bits of Number.MAX_SAFE_INTEGER (2^53 - 1): a le64 with a larger high word is no number. */
export const SAFE_HIGH_WORD_MAX = 0x1fffff;
/** A __le64 value: a btree child, a subtree root (the mapping tree's top level), a block_time. */
export const LE64_SIZE = 8;

/** A le64 field as a number; past Number.MAX_SAFE_INTEGER it is a ThinMetadataError naming it. */
export function le64Number(v: DataView, at: number, block: number, struct: string, field: string): number {
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  if (hi > SAFE_HIGH_WORD_MAX) throw new ThinMetadataError(block, struct, field, `${v.getBigUint64(at, true)} is past 2^53`);
  return hi * 0x1_0000_0000 + lo;
}
const u64 = le64Number;

/** dm_bm_checksum over the block past its csum field: crc32c(~0, [4..)) ^ xor, no final inversion. */
export function blockChecksum(block: Uint8Array, xor: number): number {
  return (crc32cUpdate(0xffffffff, block, 4, block.length) ^ xor) >>> 0;
}

/** The checks every validator starts with (sb_check, node_check, index_check, dm_bitmap_check). */
function checkBlock(v: DataView, block: Uint8Array, blocknr: number, struct: string, xor: number): void {
  const at = u64(v, 8, blocknr, struct, 'blocknr');
  if (at !== blocknr) throw new ThinMetadataError(blocknr, struct, 'blocknr', `says ${at}, read from ${blocknr}`);
  const want = blockChecksum(block, xor);
  const got = v.getUint32(0, true);
  if (got !== want) throw new ThinMetadataError(blocknr, struct, 'csum', `${got} != ${want} computed`);
}

/** disk_sm_root, the first 32 of the superblock's 128-byte space map root fields. */
export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  bitmapRoot: number;
  refCountRoot: number;
}

export interface ThinSuperblock {
  flags: number;
  blocknr: number;
  uuid: Uint8Array;
  version: number;
  time: number;
  transactionId: bigint;
  /** Block of the metadata snapshot's superblock copy; 0 when none is held. */
  heldRoot: number;
  dataSpaceMapRoot: SpaceMapRoot;
  metadataSpaceMapRoot: SpaceMapRoot;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  /** In 512-byte sectors. */
  dataBlockSize: number;
  /** In 512-byte sectors (8). */
  metadataBlockSize: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

const SB = 'thin_disk_superblock';

function smRoot(v: DataView, at: number, blocknr: number, field: string): SpaceMapRoot {
  return {
    nrBlocks: u64(v, at, blocknr, SB, `${field}.nr_blocks`),
    nrAllocated: u64(v, at + 8, blocknr, SB, `${field}.nr_allocated`),
    bitmapRoot: u64(v, at + 16, blocknr, SB, `${field}.bitmap_root`),
    refCountRoot: u64(v, at + 24, blocknr, SB, `${field}.ref_count_root`),
  };
}

/** thin_disk_superblock at `blocknr` (0, or a held copy): sb_check's blocknr, magic and csum, then the fields. */
export function decodeThinSuperblock(block: Uint8Array, blocknr: number): ThinSuperblock {
  const v = wholeBlock(block, blocknr, SB);
  const at = u64(v, 8, blocknr, SB, 'blocknr');
  if (at !== blocknr) throw new ThinMetadataError(blocknr, SB, 'blocknr', `says ${at}, read from ${blocknr}`);
  const magic = v.getBigUint64(32, true);
  if (magic !== THIN_SUPERBLOCK_MAGIC) throw new ThinMetadataError(blocknr, SB, 'magic', `${magic} is not ${THIN_SUPERBLOCK_MAGIC}`);
  checkBlock(v, block, blocknr, SB, SUPERBLOCK_CSUM_XOR);
  const version = v.getUint32(40, true);
  if (version < THIN_VERSION_MIN || version > THIN_VERSION_MAX) {
    throw new ThinMetadataError(blocknr, SB, 'version', `${version} is not ${THIN_VERSION_MIN}..${THIN_VERSION_MAX}`);
  }
  const metadataBlockSize = v.getUint32(340, true);
  if (metadataBlockSize !== THIN_METADATA_BLOCK_SECTORS) {
    throw new ThinMetadataError(blocknr, SB, 'metadata_block_size', `${metadataBlockSize} sectors, not ${THIN_METADATA_BLOCK_SECTORS}`);
  }
  return {
    flags: v.getUint32(4, true),
    blocknr,
    uuid: block.slice(16, 32),
    version,
    time: v.getUint32(44, true),
    transactionId: v.getBigUint64(48, true),
    heldRoot: u64(v, 56, blocknr, SB, 'held_root'),
    dataSpaceMapRoot: smRoot(v, 64, blocknr, 'data_space_map_root'),
    metadataSpaceMapRoot: smRoot(v, 64 + SPACE_MAP_ROOT_SIZE, blocknr, 'metadata_space_map_root'),
    dataMappingRoot: u64(v, 320, blocknr, SB, 'data_mapping_root'),
    deviceDetailsRoot: u64(v, 328, blocknr, SB, 'device_details_root'),
    dataBlockSize: v.getUint32(336, true),
    metadataBlockSize,
    metadataNrBlocks: u64(v, 344, blocknr, SB, 'metadata_nr_blocks'),
    compatFlags: v.getUint32(352, true),
    compatRoFlags: v.getUint32(356, true),
    incompatFlags: v.getUint32(360, true),
  };
}

/** dm-btree's calc_max_entries: as many key+value pairs as fit after the header, rounded down to 3n. */
export function btreeMaxEntries(valueSize: number): number {
  const total = Math.floor((THIN_METADATA_BLOCK_SIZE - NODE_HEADER_SIZE) / (8 + valueSize));
  return total - (total % 3);
}

/** A checked btree node; keys and values are read from `block` on demand. */
export interface BtreeNode {
  blocknr: number;
  leaf: boolean;
  nrEntries: number;
  maxEntries: number;
  valueSize: number;
  /** Key i (< nrEntries); a key past 2^53 is a ThinMetadataError. */
  key(i: number): number;
  /** Byte offset in `block` of value i. */
  valueOffset(i: number): number;
  /** Value i read as a le64 (a child block, a subtree root); a value past 2^53 is a ThinMetadataError. */
  value64(i: number): number;
  /** An internal node's child block i (its le64 value). */
  child(i: number): number;
  block: Uint8Array;
}

const NODE = 'node_header';

/**
 * A btree node of a tree whose leaves hold `valueSize`-byte values: node_check (blocknr, csum,
 * max_entries fits, nr_entries <= max_entries, INTERNAL or LEAF), and what the kernel always writes:
 * value_size is 8 in an internal node and `valueSize` in a leaf, max_entries is calc_max_entries of
 * it, and the flags are exactly one of the two.
 */
export function decodeBtreeNode(block: Uint8Array, blocknr: number, valueSize: number): BtreeNode {
  const v = wholeBlock(block, blocknr, NODE);
  checkBlock(v, block, blocknr, NODE, BTREE_CSUM_XOR);
  const flags = v.getUint32(4, true);
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) {
    throw new ThinMetadataError(blocknr, NODE, 'flags', `${flags} is neither INTERNAL_NODE nor LEAF_NODE`);
  }
  const leaf = flags === LEAF_NODE;
  const nrEntries = v.getUint32(16, true);
  const maxEntries = v.getUint32(20, true);
  const size = v.getUint32(24, true);
  const want = leaf ? valueSize : 8;
  if (size !== want)
    throw new ThinMetadataError(
      blocknr,
      NODE,
      'value_size',
      `${size} in ${leaf ? 'a leaf' : 'an internal node'} of a tree of ${valueSize}-byte values, not ${want}`,
    );
  const max = btreeMaxEntries(size);
  if (maxEntries !== max) throw new ThinMetadataError(blocknr, NODE, 'max_entries', `${maxEntries}, not ${max} for ${size}-byte values`);
  if (nrEntries > maxEntries) throw new ThinMetadataError(blocknr, NODE, 'nr_entries', `${nrEntries} > max_entries ${maxEntries}`);
  const valueBase = NODE_HEADER_SIZE + 8 * maxEntries;
  const key = (i: number): number => {
    if (!(i >= 0 && i < nrEntries)) throw new ThinMetadataError(blocknr, NODE, 'keys', `entry ${i} of ${nrEntries}`);
    const at = NODE_HEADER_SIZE + 8 * i;
    if (v.getUint32(at + 4, true) > SAFE_HIGH_WORD_MAX) u64(v, at, blocknr, NODE, `keys[${i}]`);
    return v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
  };
  const valueOffset = (i: number): number => {
    if (!(i >= 0 && i < nrEntries)) throw new ThinMetadataError(blocknr, NODE, 'values', `entry ${i} of ${nrEntries}`);
    return valueBase + size * i;
  };
  const value64 = (i: number): number => {
    if (size !== 8) throw new ThinMetadataError(blocknr, NODE, 'value_size', `${size}-byte values are not le64`);
    const at = valueOffset(i);
    if (v.getUint32(at + 4, true) > SAFE_HIGH_WORD_MAX) u64(v, at, blocknr, NODE, `values[${i}]`);
    return v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
  };
  const child = (i: number): number => {
    if (leaf) throw new ThinMetadataError(blocknr, NODE, 'flags', 'a leaf has no children');
    return value64(i);
  };
  return { blocknr, leaf, nrEntries, maxEntries, valueSize: size, key, valueOffset, value64, child, block };
}

export interface DeviceDetails {
  mappedBlocks: number;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
}

/** disk_device_details (24 bytes, packed) at `offset`; `blocknr` names the block in an error. */
export function decodeDeviceDetails(buf: Uint8Array, offset: number, blocknr = -1): DeviceDetails {
  const v = need(buf, offset, DISK_DEVICE_DETAILS_SIZE, blocknr, 'disk_device_details');
  return {
    mappedBlocks: u64(v, offset, blocknr, 'disk_device_details', 'mapped_blocks'),
    transactionId: v.getBigUint64(offset + 8, true),
    creationTime: v.getUint32(offset + 16, true),
    snapshottedTime: v.getUint32(offset + 20, true),
  };
}

/** A mapping leaf's le64 `(data_block << 24) | time`; 40 bits of block always fit in a number. */
export function decodeBlockTime(buf: Uint8Array, offset: number, blocknr = -1): { dataBlock: number; time: number } {
  const v = need(buf, offset, 8, blocknr, 'block_time');
  const lo = v.getUint32(offset, true);
  const hi = v.getUint32(offset + 4, true);
  return { dataBlock: hi * 2 ** (32 - BLOCK_TIME_TIME_BITS) + (lo >>> BLOCK_TIME_TIME_BITS), time: lo & BLOCK_TIME_TIME_MASK };
}

export interface IndexEntry {
  blocknr: number;
  nrFree: number;
  noneFreeBefore: number;
}

/** disk_index_entry (16 bytes) at `offset`: a bitmap block and its free counts. */
export function decodeIndexEntry(buf: Uint8Array, offset: number, blocknr = -1): IndexEntry {
  const v = need(buf, offset, DISK_INDEX_ENTRY_SIZE, blocknr, 'disk_index_entry');
  return {
    blocknr: u64(v, offset, blocknr, 'disk_index_entry', 'blocknr'),
    nrFree: v.getUint32(offset + 8, true),
    noneFreeBefore: v.getUint32(offset + 12, true),
  };
}

/** disk_metadata_index: index_check (blocknr, csum), then all MAX_METADATA_BITMAPS entries. */
export function decodeMetadataIndex(block: Uint8Array, blocknr: number): IndexEntry[] {
  const v = wholeBlock(block, blocknr, 'disk_metadata_index');
  checkBlock(v, block, blocknr, 'disk_metadata_index', INDEX_CSUM_XOR);
  const out: IndexEntry[] = [];
  for (let i = 0; i < MAX_METADATA_BITMAPS; i++) out.push(decodeIndexEntry(block, 16 + DISK_INDEX_ENTRY_SIZE * i, blocknr));
  return out;
}

/** disk_bitmap_header: dm_bitmap_check (blocknr, csum). */
export function decodeBitmapHeader(block: Uint8Array, blocknr: number): void {
  const v = wholeBlock(block, blocknr, 'disk_bitmap_header');
  checkBlock(v, block, blocknr, 'disk_bitmap_header', BITMAP_CSUM_XOR);
}

/**
 * sm_lookup_bitmap: the 2-bit count of `entry` (< ENTRIES_PER_BLOCK) in a bitmap block. In each le64
 * word, entry b's high bit is bit 2b and its low bit 2b+1; 3 means "see the ref count tree".
 */
export function bitmapCount(block: Uint8Array, entry: number): 0 | 1 | 2 | 3 {
  if (!Number.isInteger(entry) || entry < 0 || entry >= ENTRIES_PER_BLOCK || block.length !== THIN_METADATA_BLOCK_SIZE) {
    throw new ThinMetadataError(
      -1,
      'disk_bitmap_header',
      'entry',
      `entry ${entry} of ${ENTRIES_PER_BLOCK} in a ${block.length}-byte block`,
    );
  }
  const bit = entry * 2;
  const byte = block[DISK_BITMAP_HEADER_SIZE + (bit >>> 3)]!;
  const shift = bit & 7;
  const hi = (byte >>> shift) & 1;
  const lo = (byte >>> (shift + 1)) & 1;
  return ((hi << 1) | lo) as 0 | 1 | 2 | 3;
}
