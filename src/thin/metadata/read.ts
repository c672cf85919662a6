// Reading a pool's thin devices from its metadata: the device details tree, and the two-level
// mapping tree (thin id -> the root of that device's tree of virtual block -> block_time).
import { THIN_ID_MAX } from '../../dm/index.js';
import {
  type BtreeNode,
  DISK_DEVICE_DETAILS_SIZE,
  InvalidArgumentError,
  LE64_SIZE,
  THIN_FEATURE_INCOMPAT_SUPP,
  THIN_SUPERBLOCK_LOCATION,
  ThinMetadataError,
  type ThinSuperblock,
  decodeBlockTime,
  decodeDeviceDetails,
  decodeThinSuperblock,
} from '../../structs/index.js';
import type { MetadataBlocks } from './blocks.js';
import { btreeLookup, walkBtree, walkBtreeLeaves } from './btree.js';
import { countUsage } from './usage.js';

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

/** block_time keeps 40 bits of data block. */
const DATA_BLOCK_LIMIT = 2 ** 40;

function readRoots(blocks: MetadataBlocks, opts: ReadOptions): { superblock: ThinSuperblock; roots: ThinSuperblock } {
  const root = opts.root ?? 'superblock';
  if (root !== 'superblock' && root !== 'held') throw new InvalidArgumentError('metadata root', root, "is neither 'superblock' nor 'held'");
  const superblock = decodeThinSuperblock(blocks.read(THIN_SUPERBLOCK_LOCATION), THIN_SUPERBLOCK_LOCATION);
  const unsupported = superblock.incompatFlags & ~THIN_FEATURE_INCOMPAT_SUPP;
  if (unsupported !== 0) {
    throw new ThinMetadataError(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', 'incompat_flags', `unsupported features ${unsupported}`);
  }
  if (root === 'superblock') return { superblock, roots: superblock };
  // held_root 0 (the superblock's own place) means none is held.
  if (superblock.heldRoot === THIN_SUPERBLOCK_LOCATION) {
    throw new ThinMetadataError(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', 'held_root', 'no metadata snapshot is held');
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

/**
 * Mappings of one thin device in virtual block order. Nodes are checked as they are reached, so a
 * ThinMetadataError may come after some mappings were visited.
 */
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
  const counts = countUsage(
    blocks,
    tops.map((t) => t.root),
    nrDataBlocks,
    meta.roots.dataMappingRoot,
  );
  const devices = meta.devices.map((d, i): ThinDeviceUsage => {
    const c = counts[i]!;
    return { ...d, exclusiveBlocks: c.exclusive, sharedBlocks: c.mapped - c.exclusive };
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
