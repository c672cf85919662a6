// Builds small, valid dm-thin metadata images by name for the check's unit tests: a superblock,
// the details and two-level mapping trees, an optional held superblock copy, and both space maps
// with the reference counts the kernel would keep. Tests then damage one named block or field.
import {
  BITMAP_CSUM_XOR,
  BTREE_CSUM_XOR,
  blockChecksum,
  INDEX_CSUM_XOR,
  INTERNAL_NODE,
  LEAF_NODE,
  type MetadataBlocks,
  SUPERBLOCK_CSUM_XOR,
  THIN_METADATA_BLOCK_SIZE,
  THIN_SUPERBLOCK_MAGIC,
  ThinMetadataError,
} from '../../src/thin/metadata/check-format.js';

const BS = THIN_METADATA_BLOCK_SIZE;
const ENTRIES_PER_BITMAP = (BS - 16) * 4;

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
  dataRefCountRoot: number;
}

export interface ThinImage {
  bytes: Uint8Array;
  layout: ImageLayout;
  /** Metadata counts and data counts the image stores. */
  metadataCounts: number[];
  dataCounts: number[];
}

function maxEntries(valueSize: number): number {
  return Math.floor((BS - 32) / (8 + valueSize) / 3) * 3;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function node(blocknr: number, leaf: boolean, valueSize: number, entries: [number, (v: DataView, off: number) => void][]): Uint8Array {
  const b = new Uint8Array(BS);
  const v = dv(b);
  const max = maxEntries(valueSize);
  v.setUint32(4, leaf ? LEAF_NODE : INTERNAL_NODE, true);
  v.setBigUint64(8, BigInt(blocknr), true);
  v.setUint32(16, entries.length, true);
  v.setUint32(20, max, true);
  v.setUint32(24, valueSize, true);
  entries.forEach(([key, put], i) => {
    v.setBigUint64(32 + 8 * i, BigInt(key), true);
    put(v, 32 + 8 * max + valueSize * i);
  });
  v.setUint32(0, blockChecksum(b, BTREE_CSUM_XOR), true);
  return b;
}

/** Rewrites the checksum of a btree node, bitmap, index or superblock block in place. */
export function reseal(bytes: Uint8Array, blocknr: number, xor: number): void {
  const b = bytes.subarray(blocknr * BS, (blocknr + 1) * BS);
  dv(b).setUint32(0, blockChecksum(b, xor), true);
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

export function buildThinImage(spec: ImageSpec): ThinImage {
  const nrMeta = spec.metadataBlocks ?? 64;
  const nrData = spec.dataBlocks ?? 1024;
  const blocks: Uint8Array[] = [];
  const metaCounts = new Array<number>(nrMeta).fill(0);
  const dataCounts = new Array<number>(nrData).fill(0);
  let next = 1;
  const alloc = (): number => next++;
  const put = (b: number, block: Uint8Array): void => {
    blocks[b] = block;
  };
  metaCounts[0] = 1;

  // Subtrees: leaves of at most 200 entries (>= 84 when split), one internal root over several leaves.
  const subtreeRoot = new Map<number, number>();
  const leaves = new Map<number, number[]>();
  const mappedBlocks = new Map<number, number>();
  for (const d of spec.devices) {
    if (d.snapshotOf !== undefined) continue;
    const maps = [...(d.mappings ?? [])].sort((a, b) => a[0] - b[0]);
    mappedBlocks.set(d.id, maps.length);
    const perLeaf = maps.length <= maxEntries(8) ? Math.max(maps.length, 1) : Math.ceil(maps.length / Math.ceil(maps.length / 200));
    const chunks: [number, number][][] = [];
    for (let i = 0; i < maps.length; i += perLeaf) chunks.push(maps.slice(i, i + perLeaf));
    if (chunks.length === 0) chunks.push([]);
    const leafNrs = chunks.map((chunk) => {
      const b = alloc();
      put(
        b,
        node(
          b,
          true,
          8,
          chunk.map(([vb, db]) => {
            dataCounts[db] = (dataCounts[db] as number) + 1;
            return [vb, (v, off) => v.setBigUint64(off, (BigInt(db) << 24n) | 1n, true)];
          }),
        ),
      );
      return b;
    });
    leaves.set(d.id, leafNrs);
    if (leafNrs.length === 1) {
      subtreeRoot.set(d.id, leafNrs[0] as number);
    } else {
      const r = alloc();
      put(
        r,
        node(
          r,
          false,
          8,
          leafNrs.map((lb, i) => {
            metaCounts[lb] = 1;
            return [(chunks[i] as [number, number][])[0]?.[0] as number, (v, off) => v.setBigUint64(off, BigInt(lb), true)];
          }),
        ),
      );
      subtreeRoot.set(d.id, r);
    }
  }
  for (const d of spec.devices) {
    if (d.snapshotOf === undefined) continue;
    subtreeRoot.set(d.id, subtreeRoot.get(d.snapshotOf) as number);
    leaves.set(d.id, leaves.get(d.snapshotOf) as number[]);
    mappedBlocks.set(d.id, mappedBlocks.get(d.snapshotOf) as number);
  }
  const ids = spec.devices.map((d) => d.id).sort((a, b) => a - b);
  for (const id of ids) {
    const r = subtreeRoot.get(id) as number;
    metaCounts[r] = (metaCounts[r] as number) + 1;
  }

  const detailsRoot = alloc();
  put(
    detailsRoot,
    node(
      detailsRoot,
      true,
      24,
      ids.map((id) => [
        id,
        (v, off) => {
          v.setBigUint64(off, BigInt(mappedBlocks.get(id) as number), true);
          v.setBigUint64(off + 8, 1n, true);
        },
      ]),
    ),
  );
  const mappingRoot = alloc();
  put(
    mappingRoot,
    node(
      mappingRoot,
      true,
      8,
      ids.map((id) => [id, (v, off) => v.setBigUint64(off, BigInt(subtreeRoot.get(id) as number), true)]),
    ),
  );
  metaCounts[detailsRoot] = 1;
  metaCounts[mappingRoot] = 1;

  const metadataIndex = alloc();
  const metadataBitmaps = Array.from({ length: Math.ceil(nrMeta / ENTRIES_PER_BITMAP) }, alloc);
  const dataIndexRoot = alloc();
  const dataBitmaps = Array.from({ length: Math.ceil(nrData / ENTRIES_PER_BITMAP) }, alloc);
  const metadataRefCountRoot = alloc();
  const dataRefCountRoot = alloc();
  for (const b of [metadataIndex, ...metadataBitmaps, dataIndexRoot, ...dataBitmaps, metadataRefCountRoot, dataRefCountRoot])
    metaCounts[b] = 1;

  let heldRoot = 0;
  if (spec.held) {
    heldRoot = alloc();
    metaCounts[heldRoot] = 1;
    metaCounts[detailsRoot] = (metaCounts[detailsRoot] as number) + 1;
    metaCounts[mappingRoot] = (metaCounts[mappingRoot] as number) + 1;
  }
  if (next > nrMeta) throw new Error(`image needs ${next} metadata blocks`);

  const sm = (counts: number[], bitmapNrs: number[]): { bitmaps: Uint8Array[]; entries: [number, number, number][] } => {
    const bitmaps: Uint8Array[] = [];
    const entries: [number, number, number][] = [];
    bitmapNrs.forEach((bnr, i) => {
      const b = new Uint8Array(BS);
      dv(b).setBigUint64(8, BigInt(bnr), true);
      let free = 0;
      let firstFree = -1;
      for (let e = 0; e < ENTRIES_PER_BITMAP && i * ENTRIES_PER_BITMAP + e < counts.length; e++) {
        const c = Math.min(counts[i * ENTRIES_PER_BITMAP + e] as number, 3);
        if (c === 0) {
          free++;
          if (firstFree < 0) firstFree = e;
        }
        const bit = 2 * (e % 32);
        const word = 16 + 8 * Math.floor(e / 32);
        const setBit = (k: number) => {
          b[word + (k >> 3)] = (b[word + (k >> 3)] as number) | (1 << (k & 7));
        };
        if (c & 2) setBit(bit);
        if (c & 1) setBit(bit + 1);
      }
      dv(b).setUint32(0, blockChecksum(b, BITMAP_CSUM_XOR), true);
      bitmaps.push(b);
      entries.push([bnr, free, firstFree < 0 ? ENTRIES_PER_BITMAP : firstFree]);
    });
    return { bitmaps, entries };
  };
  const refCountLeaf = (b: number, counts: number[]): Uint8Array =>
    node(
      b,
      true,
      4,
      counts.flatMap((c, i) =>
        c > 2 ? [[i, (v: DataView, off: number) => v.setUint32(off, c, true)] as [number, (v: DataView, off: number) => void]] : [],
      ),
    );

  const meta = sm(metaCounts, metadataBitmaps);
  meta.bitmaps.forEach((b, i) => {
    put(metadataBitmaps[i] as number, b);
  });
  const index = new Uint8Array(BS);
  dv(index).setBigUint64(8, BigInt(metadataIndex), true);
  meta.entries.forEach(([bnr, free, nfb], i) => {
    dv(index).setBigUint64(16 + 16 * i, BigInt(bnr), true);
    dv(index).setUint32(24 + 16 * i, free, true);
    dv(index).setUint32(28 + 16 * i, nfb, true);
  });
  dv(index).setUint32(0, blockChecksum(index, INDEX_CSUM_XOR), true);
  put(metadataIndex, index);
  put(metadataRefCountRoot, refCountLeaf(metadataRefCountRoot, metaCounts));

  const data = sm(dataCounts, dataBitmaps);
  data.bitmaps.forEach((b, i) => {
    put(dataBitmaps[i] as number, b);
  });
  put(
    dataIndexRoot,
    node(
      dataIndexRoot,
      true,
      16,
      data.entries.map(([bnr, free, nfb], i) => [
        i,
        (v, off) => {
          v.setBigUint64(off, BigInt(bnr), true);
          v.setUint32(off + 8, free, true);
          v.setUint32(off + 12, nfb, true);
        },
      ]),
    ),
  );
  put(dataRefCountRoot, refCountLeaf(dataRefCountRoot, dataCounts));

  const superblock = (at: number, withSpaceMaps: boolean): Uint8Array => {
    const b = new Uint8Array(BS);
    const v = dv(b);
    v.setBigUint64(8, BigInt(at), true);
    v.setBigUint64(32, THIN_SUPERBLOCK_MAGIC, true);
    v.setUint32(40, 2, true);
    v.setBigUint64(48, 1n, true);
    v.setBigUint64(56, BigInt(withSpaceMaps ? heldRoot : 0), true);
    if (withSpaceMaps) {
      const root = (off: number, nr: number, counts: number[], bitmapRoot: number, refRoot: number) => {
        v.setBigUint64(off, BigInt(nr), true);
        v.setBigUint64(off + 8, BigInt(counts.filter((c) => c > 0).length), true);
        v.setBigUint64(off + 16, BigInt(bitmapRoot), true);
        v.setBigUint64(off + 24, BigInt(refRoot), true);
      };
      root(64, nrData, dataCounts, dataIndexRoot, dataRefCountRoot);
      root(192, nrMeta, metaCounts, metadataIndex, metadataRefCountRoot);
    }
    v.setBigUint64(320, BigInt(mappingRoot), true);
    v.setBigUint64(328, BigInt(detailsRoot), true);
    v.setUint32(336, 128, true);
    v.setUint32(340, 8, true);
    v.setBigUint64(344, BigInt(nrMeta), true);
    v.setUint32(0, blockChecksum(b, SUPERBLOCK_CSUM_XOR), true);
    return b;
  };
  put(0, superblock(0, true));
  if (heldRoot) put(heldRoot, superblock(heldRoot, false));

  const bytes = new Uint8Array(nrMeta * BS);
  blocks.forEach((b, i) => {
    bytes.set(b, i * BS);
  });
  return {
    bytes,
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
      dataRefCountRoot,
    },
    metadataCounts: metaCounts,
    dataCounts,
  };
}

/** MetadataBlocks over bytes in memory (copies, as a device read would). */
export function memoryBlocks(bytes: Uint8Array): MetadataBlocks {
  const nrBlocks = Math.floor(bytes.length / BS);
  return {
    nrBlocks,
    read(blocknr: number): Uint8Array {
      if (!Number.isInteger(blocknr) || blocknr < 0 || blocknr >= nrBlocks)
        throw new ThinMetadataError(blocknr, 'metadata device', 'size', `block ${blocknr} is past the end (${nrBlocks} blocks)`);
      return bytes.slice(blocknr * BS, (blocknr + 1) * BS);
    },
    close(): void {},
  };
}
