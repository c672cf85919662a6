// persistent-data's on-disk space maps (dm-space-map-common.c): index entries, 2-bit bitmaps,
// and the ref count btree that holds every count the bitmaps write as 3.
import { bitmapCount, ENTRIES_PER_BLOCK } from '../../structs/index.js';

/** A bitmap entry of 3 means: look the count up in ref_count_root. */
export const BITMAP_OVERFLOW = 3;

/** How many bitmap blocks count nrBlocks blocks. */
export function nrBitmaps(nrBlocks: number): number {
  return Math.ceil(nrBlocks / ENTRIES_PER_BLOCK);
}

/** A space map as read from disk: bitmaps by index (null: unreadable) and the overflow counts. */
export interface SpaceMapImage {
  nrBlocks: number;
  bitmaps: (Uint8Array | null)[];
  refCounts: Map<number, number>;
}

/** The count a space map stores for block b; null when its bitmap could not be read. */
export function storedCount(sm: SpaceMapImage, b: number): number | null {
  const bitmap = sm.bitmaps[Math.floor(b / ENTRIES_PER_BLOCK)];
  if (!bitmap) return null;
  const c = bitmapCount(bitmap, b % ENTRIES_PER_BLOCK);
  return c === BITMAP_OVERFLOW ? (sm.refCounts.get(b) ?? c) : c;
}

/** Whether the bitmap entry of b is 3 (so its count must be in the ref count tree). */
export function isOverflow(sm: SpaceMapImage, b: number): boolean {
  const bitmap = sm.bitmaps[Math.floor(b / ENTRIES_PER_BLOCK)];
  return bitmap !== null && bitmap !== undefined && bitmapCount(bitmap, b % ENTRIES_PER_BLOCK) === BITMAP_OVERFLOW;
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
}
