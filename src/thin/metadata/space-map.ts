// persistent-data's on-disk space maps (dm-space-map-common.c): index entries, 2-bit bitmaps,
// and the ref count btree that holds every count the bitmaps write as 3.
import { bitmapCount, type IndexEntry, THIN_METADATA_BLOCK_SIZE } from './check-format.js';

/** sizeof(struct disk_bitmap_header). */
export const BITMAP_HEADER_SIZE = 16;
/** Blocks one bitmap block counts: 2 bits each after the header. */
export const ENTRIES_PER_BITMAP = (THIN_METADATA_BLOCK_SIZE - BITMAP_HEADER_SIZE) * 4;
/** dm-space-map-metadata.h: the metadata space map's single index block holds this many entries. */
export const MAX_METADATA_BITMAPS = 255;
/** sizeof(struct disk_index_entry): the data space map's index btree value. */
export const INDEX_ENTRY_SIZE = 16;
/** A bitmap entry of 3 means: look the count up in ref_count_root. */
export const BITMAP_OVERFLOW = 3;

/** How many bitmap blocks count nrBlocks blocks. */
export function nrBitmaps(nrBlocks: number): number {
  return Math.ceil(nrBlocks / ENTRIES_PER_BITMAP);
}

export function decodeIndexEntry(buf: Uint8Array, offset: number): IndexEntry {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const blocknr = dv.getBigUint64(offset, true);
  return {
    blocknr: blocknr > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(blocknr),
    nrFree: dv.getUint32(offset + 8, true),
    noneFreeBefore: dv.getUint32(offset + 12, true),
  };
}

/** A space map as read from disk: bitmaps by index (null: unreadable) and the overflow counts. */
export interface SpaceMapImage {
  nrBlocks: number;
  bitmaps: (Uint8Array | null)[];
  refCounts: Map<number, number>;
}

/** The count a space map stores for block b; null when its bitmap could not be read. */
export function storedCount(sm: SpaceMapImage, b: number): number | null {
  const bitmap = sm.bitmaps[Math.floor(b / ENTRIES_PER_BITMAP)];
  if (!bitmap) return null;
  const c = bitmapCount(bitmap, b % ENTRIES_PER_BITMAP);
  return c === BITMAP_OVERFLOW ? (sm.refCounts.get(b) ?? c) : c;
}

/** Whether the bitmap entry of b is 3 (so its count must be in the ref count tree). */
export function isOverflow(sm: SpaceMapImage, b: number): boolean {
  const bitmap = sm.bitmaps[Math.floor(b / ENTRIES_PER_BITMAP)];
  return bitmap !== null && bitmap !== undefined && bitmapCount(bitmap, b % ENTRIES_PER_BITMAP) === BITMAP_OVERFLOW;
}

/** Reference counts found by walking: dense below a bound, sparse above (a pool's data device can be huge). */
export class BlockCounts {
  private readonly dense: Uint32Array;
  private readonly sparse = new Map<number, number>();

  constructor(nrBlocks: number, denseLimit = 1 << 22) {
    this.dense = new Uint32Array(Math.min(nrBlocks, denseLimit));
  }

  inc(b: number): number {
    if (b < this.dense.length) {
      const c = (this.dense[b] as number) + 1;
      this.dense[b] = c;
      return c;
    }
    const c = (this.sparse.get(b) ?? 0) + 1;
    this.sparse.set(b, c);
    return c;
  }

  get(b: number): number {
    return b < this.dense.length ? (this.dense[b] as number) : (this.sparse.get(b) ?? 0);
  }

  /** Blocks at or past `from` with a nonzero count. */
  *nonzeroFrom(from: number): Generator<number> {
    for (let b = from; b < this.dense.length; b++) if (this.dense[b]) yield b;
    for (const b of [...this.sparse.keys()].sort((x, y) => x - y)) if (b >= from) yield b;
  }
}
