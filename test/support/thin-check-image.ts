// Whole dm-thin metadata images for the check's unit tests, on thin-metadata-builder's blocks: the
// details and two-level mapping trees, an optional held superblock copy, and both space maps with
// the reference counts the kernel would keep. Tests then damage one named block or field.
import {
  BITMAP_CSUM_XOR,
  BTREE_CSUM_XOR,
  blockChecksum,
  ENTRIES_PER_BLOCK,
  INDEX_CSUM_XOR,
  type IndexEntry,
  SUPERBLOCK_CSUM_XOR,
  THIN_METADATA_BLOCK_SIZE,
} from '../../src/structs/index.js';
import { blockTime, details, le32, le64, MetadataImage } from './thin-metadata-builder.js';

const BS = THIN_METADATA_BLOCK_SIZE;
/** Leaves of at most this many mappings: a device past it gets an internal node over >= 2 leaves of >= 84. */
const LEAF_FILL = 200;
const SINGLE_LEAF_MAX = 252;

export interface ImageDevice {
  id: number;
  /** [virtual block, data block] pairs in any order. */
  mappings?: [number, number][];
  /** Shares the mapping subtree of this device (a snapshot just taken). */
  snapshotOf?: number;
}

export interface ImageSpec {
  devices: ImageDevice[];
  dataBlocks?: number;
  metadataBlocks?: number;
  /** Hold a metadata snapshot of the final trees (reserve_metadata_snap). */
  held?: boolean;
}

export interface ImageLayout {
  detailsRoot: number;
  mappingRoot: number;
  /** Per thin id: its subtree root, and its leaves in key order. */
  subtreeRoot: Map<number, number>;
  leaves: Map<number, number[]>;
  heldRoot: number;
  metadataIndex: number;
  metadataBitmaps: number[];
  dataIndexRoot: number;
  dataBitmaps: number[];
  metadataRefCountRoot: number;
}

export interface ThinImage {
  bytes: Uint8Array;
  layout: ImageLayout;
  /** The counts the image's space maps store. */
  metadataCounts: number[];
  dataCounts: number[];
}

/** disk_index_entry, the data space map index tree's value. */
function indexEntry(e: IndexEntry): Uint8Array {
  const b = new Uint8Array(16);
  b.set(le64(e.blocknr), 0);
  b.set(le32(e.nrFree), 8);
  b.set(le32(e.noneFreeBefore), 12);
  return b;
}

export function buildThinImage(spec: ImageSpec): ThinImage {
  const nrMeta = spec.metadataBlocks ?? 64;
  const nrData = spec.dataBlocks ?? 1024;
  const img = new MetadataImage(nrMeta);
  const meta = new Array<number>(nrMeta).fill(0);
  const data = new Array<number>(nrData).fill(0);
  const ref = (b: number) => {
    meta[b] = (meta[b] as number) + 1;
  };
  ref(0);

  const subtreeRoot = new Map<number, number>();
  const leaves = new Map<number, number[]>();
  const mapped = new Map<number, number>();
  for (const d of spec.devices) {
    if (d.snapshotOf !== undefined) continue;
    const maps = [...(d.mappings ?? [])].sort((a, b) => a[0] - b[0]);
    mapped.set(d.id, maps.length);
    const perLeaf = maps.length <= SINGLE_LEAF_MAX ? Math.max(maps.length, 1) : Math.ceil(maps.length / Math.ceil(maps.length / LEAF_FILL));
    const chunks: [number, number][][] = [];
    for (let i = 0; i < maps.length; i += perLeaf) chunks.push(maps.slice(i, i + perLeaf));
    if (chunks.length === 0) chunks.push([]);
    const leafNrs = chunks.map((chunk) => {
      for (const [, db] of chunk) data[db] = (data[db] as number) + 1;
      return img.leaf(
        chunk.map(([vb, db]) => [vb, blockTime(db, 1)] as const),
        { valueSize: 8 },
      );
    });
    leaves.set(d.id, leafNrs);
    if (leafNrs.length === 1) subtreeRoot.set(d.id, leafNrs[0] as number);
    else {
      for (const b of leafNrs) ref(b);
      subtreeRoot.set(d.id, img.internal(leafNrs.map((b, i) => [(chunks[i] as [number, number][])[0]?.[0] as number, b] as const)));
    }
  }
  for (const d of spec.devices) {
    if (d.snapshotOf === undefined) continue;
    subtreeRoot.set(d.id, subtreeRoot.get(d.snapshotOf) as number);
    leaves.set(d.id, leaves.get(d.snapshotOf) as number[]);
    mapped.set(d.id, mapped.get(d.snapshotOf) as number);
  }
  const ids = spec.devices.map((d) => d.id).sort((a, b) => a - b);
  for (const id of ids) ref(subtreeRoot.get(id) as number);

  const detailsRoot = img.leaf(
    ids.map((id) => [id, details({ mappedBlocks: mapped.get(id) as number, transactionId: 1n })] as const),
    { valueSize: 24 },
  );
  const mappingRoot = img.leaf(
    ids.map((id) => [id, le64(subtreeRoot.get(id) as number)] as const),
    { valueSize: 8 },
  );
  ref(detailsRoot);
  ref(mappingRoot);

  const metadataIndex = img.alloc();
  const metadataBitmaps = Array.from({ length: Math.ceil(nrMeta / ENTRIES_PER_BLOCK) }, () => img.alloc());
  const dataIndexRoot = img.alloc();
  const dataBitmaps = Array.from({ length: Math.ceil(nrData / ENTRIES_PER_BLOCK) }, () => img.alloc());
  const metadataRefCountRoot = img.alloc();
  const dataRefCountRoot = img.alloc();
  for (const b of [metadataIndex, ...metadataBitmaps, dataIndexRoot, ...dataBitmaps, metadataRefCountRoot, dataRefCountRoot]) ref(b);
  let heldRoot = 0;
  if (spec.held) {
    heldRoot = img.alloc();
    ref(heldRoot);
    ref(detailsRoot);
    ref(mappingRoot);
  }
  if (img.nrBlocks > nrMeta) throw new Error(`the image needs ${img.nrBlocks} metadata blocks`);

  /** Bitmaps of `counts` at `at`; their index entries (nr_free, none_free_before). */
  const spaceMap = (counts: number[], at: number[]): IndexEntry[] =>
    at.map((bnr, i) => {
      const slice = counts.slice(i * ENTRIES_PER_BLOCK, (i + 1) * ENTRIES_PER_BLOCK);
      img.bitmap(
        slice.map((c) => Math.min(c, 3)),
        {},
        bnr,
      );
      const free = slice.filter((c) => c === 0).length;
      const first = slice.indexOf(0);
      return { blocknr: bnr, nrFree: free, noneFreeBefore: first < 0 ? ENTRIES_PER_BLOCK : first };
    });
  const overflow = (counts: number[]) => counts.flatMap((c, b) => (c > 2 ? [[b, le32(c)] as const] : []));

  const metaEntries = spaceMap(meta, metadataBitmaps);
  img.metadataIndex(metaEntries, {}, metadataIndex);
  img.leaf(overflow(meta), { valueSize: 4 }, metadataRefCountRoot);
  const dataEntries = spaceMap(data, dataBitmaps);
  img.leaf(
    dataEntries.map((e, i) => [i, indexEntry(e)] as const),
    { valueSize: 16 },
    dataIndexRoot,
  );
  img.leaf(overflow(data), { valueSize: 4 }, dataRefCountRoot);

  const allocated = (counts: number[]) => counts.filter((c) => c > 0).length;
  img.superblock(
    {
      transactionId: 1n,
      heldRoot,
      dataSpaceMapRoot: { nrBlocks: nrData, nrAllocated: allocated(data), bitmapRoot: dataIndexRoot, refCountRoot: dataRefCountRoot },
      metadataSpaceMapRoot: {
        nrBlocks: nrMeta,
        nrAllocated: allocated(meta),
        bitmapRoot: metadataIndex,
        refCountRoot: metadataRefCountRoot,
      },
      dataMappingRoot: mappingRoot,
      deviceDetailsRoot: detailsRoot,
      metadataNrBlocks: nrMeta,
    },
    0,
  );
  // reserve_metadata_snap wipes the copy's space map roots: they are not published.
  if (heldRoot)
    img.superblock(
      {
        dataSpaceMapRoot: { nrBlocks: 0 },
        metadataSpaceMapRoot: { nrBlocks: 0 },
        dataMappingRoot: mappingRoot,
        deviceDetailsRoot: detailsRoot,
      },
      heldRoot,
    );

  return {
    bytes: img.image(),
    layout: {
      detailsRoot,
      mappingRoot,
      subtreeRoot,
      leaves,
      heldRoot,
      metadataIndex,
      metadataBitmaps,
      dataIndexRoot,
      dataBitmaps,
      metadataRefCountRoot,
    },
    metadataCounts: meta,
    dataCounts: data,
  };
}

/** Rewrites the checksum of block `blocknr` of an image in place (its other fields as they are). */
export function reseal(bytes: Uint8Array, blocknr: number, xor: number): void {
  const b = bytes.subarray(blocknr * BS, (blocknr + 1) * BS);
  new DataView(b.buffer, b.byteOffset, BS).setUint32(0, blockChecksum(b, xor), true);
}

/** Sets one 2-bit entry of the bitmap block at `bitmap` (kernel order: bit 2e high, 2e+1 low) and reseals it. */
export function setBitmapEntry(bytes: Uint8Array, bitmap: number, entry: number, count: 0 | 1 | 2 | 3): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset + bitmap * BS, BS);
  const word = 16 + 8 * Math.floor(entry / 32);
  const bit = BigInt(2 * (entry % 32));
  const hiLo = (BigInt(count >> 1) << bit) | (BigInt(count & 1) << (bit + 1n));
  v.setBigUint64(word, (v.getBigUint64(word, true) & ~(3n << bit)) | hiLo, true);
  reseal(bytes, bitmap, BITMAP_CSUM_XOR);
}

export const XOR = { superblock: SUPERBLOCK_CSUM_XOR, btree: BTREE_CSUM_XOR, bitmap: BITMAP_CSUM_XOR, index: INDEX_CSUM_XOR };
