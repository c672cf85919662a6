// thin_check's walk of dm-thin metadata: the superblock, every btree's nodes, and both space maps'
// reference counts against the references the walk finds. Damage is reported, never thrown.
//
// Reference counts follow the kernel's shadowing (dm-btree.c inc_children): a metadata block counts
// one per distinct parent node (or root field) pointing at it, a data block one per distinct mapping
// leaf holding it. So the walk descends into a block only the first time it is referenced.
import {
  type BtreeNode,
  DISK_DEVICE_DETAILS_SIZE,
  DISK_INDEX_ENTRY_SIZE,
  type DeviceDetails,
  decodeBitmapHeader,
  decodeBlockTime,
  decodeDeviceDetails,
  decodeIndexEntry,
  decodeMetadataIndex,
  decodeThinSuperblock,
  ENTRIES_PER_BLOCK,
  type IndexEntry,
  MAX_METADATA_BITMAPS,
  type SpaceMapRoot,
  LE64_SIZE,
  THIN_FEATURE_INCOMPAT_SUPP,
  THIN_SUPERBLOCK_LOCATION,
  type ThinSuperblock,
} from '../../structs/index.js';
import type { MetadataBlocks } from './blocks.js';
import { BITMAP_OVERFLOW, BlockCounts, isOverflow, nrBitmaps, type SpaceMapImage, storedCount } from './space-map.js';
import { Checker, type MetadataCheck, type MetadataProblem } from './checker.js';

export type { MetadataCheck, MetadataProblem };

/** dm-thin.c DATA_DEV_BLOCK_SIZE_MIN_SECTORS / _MAX_SECTORS: a pool's block size range and step. */
const DATA_DEV_BLOCK_SIZE_MIN_SECTORS = 128;
const DATA_DEV_BLOCK_SIZE_MAX_SECTORS = 2097152;
const REF_COUNT_SIZE = 4;

function leafValues(node: BtreeNode, fn: (key: number, offset: number, i: number) => void): void {
  for (let i = 0; i < node.nrEntries; i++) fn(node.key(i), node.valueOffset(i), i);
}

function u32At(block: Uint8Array, offset: number): number {
  return new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(offset, true);
}

/** What decodeThinSuperblock leaves to the pool: the data block size dm-thin accepts, no unknown incompat feature. */
function superblockFields(c: Checker, sb: ThinSuperblock): void {
  const d = sb.dataBlockSize;
  if (d < DATA_DEV_BLOCK_SIZE_MIN_SECTORS || d > DATA_DEV_BLOCK_SIZE_MAX_SECTORS || d % DATA_DEV_BLOCK_SIZE_MIN_SECTORS !== 0)
    c.problem(
      THIN_SUPERBLOCK_LOCATION,
      `thin_disk_superblock.data_block_size ${d} is not a multiple of ${DATA_DEV_BLOCK_SIZE_MIN_SECTORS} sectors in ${DATA_DEV_BLOCK_SIZE_MIN_SECTORS}..${DATA_DEV_BLOCK_SIZE_MAX_SECTORS}`,
    );
  if ((sb.incompatFlags & ~THIN_FEATURE_INCOMPAT_SUPP) !== 0)
    c.problem(THIN_SUPERBLOCK_LOCATION, `thin_disk_superblock.incompat_flags ${sb.incompatFlags} names unsupported features`);
}

/** The device details tree and two-level mapping tree under one set of roots. */
function checkTrees(c: Checker, roots: ThinSuperblock, label: string, dataRefs: BlockCounts, dataNrBlocks: number): void {
  const details = new Map<number, DeviceDetails>();
  const detailsWhat = `${label}device details tree`;
  const start = c.found;
  c.walk(roots.deviceDetailsRoot, detailsWhat, DISK_DEVICE_DETAILS_SIZE, (node) =>
    leafValues(node, (thinId, off) => {
      const d = c.decode(node.blocknr, detailsWhat, () => decodeDeviceDetails(node.block, off, node.blocknr));
      if (d) details.set(thinId, d);
    }),
  );

  const detailsSound = c.found === start;
  const subtrees = new Map<number, number>();
  const top = c.found;
  c.walk(roots.dataMappingRoot, `${label}mapping tree (top level)`, LE64_SIZE, (node) =>
    leafValues(node, (thinId, _off, i) => subtrees.set(thinId, node.value64(i))),
  );
  const topSound = c.found === top;

  // A damaged tree lacks ids: comparing the two trees' ids then says nothing new.
  for (const id of details.keys())
    if (topSound && !subtrees.has(id))
      c.problem(roots.dataMappingRoot, `${label}thin ${id}: in the device details tree but not in the mapping tree`);
  for (const [id, root] of subtrees) {
    const what = `${label}mapping tree of thin ${id}`;
    const mapped = c.walk(root, what, LE64_SIZE, (node) =>
      leafValues(node, (virtualBlock, off) => {
        const { dataBlock } = decodeBlockTime(node.block, off, node.blocknr);
        if (dataBlock >= dataNrBlocks)
          c.problem(
            node.blocknr,
            `${what}: virtual block ${virtualBlock} maps data block ${dataBlock}, past data space map nr_blocks ${dataNrBlocks}`,
          );
        else dataRefs.inc(dataBlock);
      }),
    );
    const d = details.get(id);
    if (!d) {
      if (detailsSound) c.problem(roots.deviceDetailsRoot, `${label}thin ${id}: in the mapping tree but not in the device details tree`);
    } else if (mapped !== null && mapped !== d.mappedBlocks)
      c.problem(
        roots.deviceDetailsRoot,
        `${label}thin ${id}: disk_device_details.mapped_blocks ${d.mappedBlocks}, but its mapping tree holds ${mapped}`,
      );
  }
}

/** Reads one bitmap block (counting the reference to it); null when missing or damaged. */
function readBitmap(c: Checker, index: number, entry: IndexEntry | undefined, what: string): Uint8Array | null {
  if (!entry || entry.blocknr === 0) {
    c.damage(null, `${what}: no bitmap for index ${index}`);
    return null;
  }
  const b = entry.blocknr;
  if (!c.reference(b, `${what} bitmap ${index}`)) return null;
  const block = c.read(b, what);
  if (!block) return null;
  return c.decode(b, `${what} bitmap ${index}`, () => {
    decodeBitmapHeader(block, b);
    return block;
  });
}

function refCountTree(c: Checker, root: number, what: string): Map<number, number> {
  const counts = new Map<number, number>();
  c.walk(root, `${what} ref count tree`, REF_COUNT_SIZE, (node) => leafValues(node, (b, off) => counts.set(b, u32At(node.block, off))));
  return counts;
}

function metadataSpaceMap(c: Checker, root: SpaceMapRoot): SpaceMapImage {
  const what = 'metadata space map';
  const n = nrBitmaps(root.nrBlocks);
  const bitmaps: (Uint8Array | null)[] = [];
  let index: IndexEntry[] | null = null;
  if (n > MAX_METADATA_BITMAPS)
    c.problem(THIN_SUPERBLOCK_LOCATION, `${what}: nr_blocks ${root.nrBlocks} needs ${n} bitmaps, more than ${MAX_METADATA_BITMAPS}`);
  else if (c.reference(root.bitmapRoot, `${what} index`)) {
    const block = c.read(root.bitmapRoot, what);
    index = block && c.decode(root.bitmapRoot, `${what} index`, () => decodeMetadataIndex(block, root.bitmapRoot));
  }
  if (index) for (let i = 0; i < n; i++) bitmaps.push(readBitmap(c, i, index[i], what));
  return { nrBlocks: root.nrBlocks, bitmaps, refCounts: refCountTree(c, root.refCountRoot, what) };
}

function dataSpaceMap(c: Checker, root: SpaceMapRoot): SpaceMapImage {
  const what = 'data space map';
  const n = nrBitmaps(root.nrBlocks);
  const index = new Map<number, IndexEntry>();
  c.walk(root.bitmapRoot, `${what} index tree`, DISK_INDEX_ENTRY_SIZE, (node) =>
    leafValues(node, (i, off) => index.set(i, decodeIndexEntry(node.block, off, node.blocknr))),
  );
  const bitmaps: (Uint8Array | null)[] = [];
  // Every bitmap is a metadata block: more than the device holds is a lie, not a map.
  if (n > c.limit)
    c.problem(
      THIN_SUPERBLOCK_LOCATION,
      `${what}: nr_blocks ${root.nrBlocks} needs ${n} bitmaps, more than the metadata's ${c.limit} blocks`,
    );
  else for (let i = 0; i < n; i++) bitmaps.push(readBitmap(c, i, index.get(i), what));
  for (const i of index.keys()) if (i >= n) c.problem(null, `${what}: index entry ${i} past nr_blocks ${root.nrBlocks}`);
  return { nrBlocks: root.nrBlocks, bitmaps, refCounts: refCountTree(c, root.refCountRoot, what) };
}

/** Each block's stored count against the references found, and nr_allocated against the bitmaps. */
function compareCounts(c: Checker, sm: SpaceMapImage, root: SpaceMapRoot, found: (b: number) => number, what: string, unit: string): void {
  if (sm.bitmaps.length < nrBitmaps(sm.nrBlocks)) return; // the map itself could not be read: reported
  let allocated = 0;
  let complete = true;
  for (let b = 0; b < sm.nrBlocks; b++) {
    const stored = storedCount(sm, b);
    if (stored === null) {
      complete = false;
      b = (Math.floor(b / ENTRIES_PER_BLOCK) + 1) * ENTRIES_PER_BLOCK - 1;
      continue;
    }
    if (stored > 0) allocated++;
    if (isOverflow(sm, b) && !sm.refCounts.has(b))
      c.problem(null, `${what}: ${unit} block ${b} has bitmap count ${BITMAP_OVERFLOW} but no entry in the ref count tree`);
    else if (isOverflow(sm, b) && stored < BITMAP_OVERFLOW)
      c.problem(null, `${what}: ${unit} block ${b} has ref count tree count ${stored}, below ${BITMAP_OVERFLOW}`);
    const want = found(b);
    if (stored !== want) c.problem(null, `${what}: ${unit} block ${b} has count ${stored}, but ${want} references were found`);
  }
  if (complete && allocated !== root.nrAllocated)
    c.problem(
      THIN_SUPERBLOCK_LOCATION,
      `${what}: disk_sm_root.nr_allocated ${root.nrAllocated}, but the bitmaps count ${allocated} blocks in use`,
    );
}

/**
 * Structure, checksums, key order, and both space maps' reference counts against what the trees
 * use, as thin_check checks them (plus the data counts and mapped_blocks that thin_check 1.x adds).
 * Never throws on bad metadata; at most MAX_PROBLEMS problems are listed.
 */
export function checkThinMetadata(blocks: MetadataBlocks): MetadataCheck {
  const probe = new Checker(blocks, 0, 0);
  if (blocks.nrBlocks < 1) {
    probe.problem(null, 'the metadata device holds no superblock');
    return { ok: false, problems: probe.finish(), superblock: null };
  }
  const block = probe.read(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock');
  const sb =
    block && probe.decode(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock', () => decodeThinSuperblock(block, THIN_SUPERBLOCK_LOCATION));
  if (!sb) return { ok: false, problems: probe.finish(), superblock: null };

  const smRoot = sb.metadataSpaceMapRoot;
  const c = new Checker(blocks, Math.min(blocks.nrBlocks, smRoot.nrBlocks), smRoot.nrBlocks);
  superblockFields(c, sb);
  if (smRoot.nrBlocks > blocks.nrBlocks)
    c.problem(THIN_SUPERBLOCK_LOCATION, `metadata space map nr_blocks ${smRoot.nrBlocks}, but the device holds ${blocks.nrBlocks} blocks`);
  c.reference(THIN_SUPERBLOCK_LOCATION, 'thin_disk_superblock');

  const dataRoot = sb.dataSpaceMapRoot;
  const dataRefs = new BlockCounts(dataRoot.nrBlocks);
  const beforeTrees = c.damaged;
  checkTrees(c, sb, '', dataRefs, dataRoot.nrBlocks);

  // reserve_metadata_snap: a copy of the superblock whose two tree roots each hold one more reference.
  if (sb.heldRoot !== 0 && c.reference(sb.heldRoot, 'held_root')) {
    const what = 'held_root superblock copy';
    const held = c.read(sb.heldRoot, what);
    const roots = held && c.decode(sb.heldRoot, what, () => decodeThinSuperblock(held, sb.heldRoot));
    if (roots) checkTrees(c, roots, 'held ', dataRefs, dataRoot.nrBlocks);
  }

  const treesSound = c.damaged === beforeTrees;
  const metadataSm = metadataSpaceMap(c, smRoot);
  const dataSm = dataSpaceMap(c, dataRoot);
  // Counts are compared only when every reference was found (thin_check stops at damaged trees
  // too): a tree that could not be walked would report each block under it as leaked.
  if (c.damaged === beforeTrees)
    compareCounts(c, metadataSm, smRoot, (b) => (b < c.refs.length ? (c.refs[b] as number) : 0), 'metadata space map', 'metadata');
  if (treesSound) compareCounts(c, dataSm, dataRoot, (b) => dataRefs.get(b), 'data space map', 'data');

  const problems = c.finish();
  return { ok: problems.length === 0, problems, superblock: sb };
}
