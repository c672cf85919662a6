// The blocks of a metadata device (a pool's metadata file or block device), read-only.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { blockDeviceSizeBytes, flushBuffers } from '../../blk/index.js';
import { THIN_METADATA_BLOCK_SIZE, ThinMetadataError } from '../../structs/index.js';

/** Blocks of a metadata device; read() returns exactly THIN_METADATA_BLOCK_SIZE bytes or throws ThinMetadataError (past the end). */
export interface MetadataBlocks {
  readonly nrBlocks: number;
  /**
   * Block `blocknr`, in a buffer of its own that is never reused (callers may keep several). It
   * may be a view into a larger ArrayBuffer: a DataView over it needs its byteOffset.
   */
  read(blocknr: number): Uint8Array;
  close(): void;
}

/** A read past the device, or at a block number that is not one. */
export function pastTheEnd(blocknr: number, nrBlocks: number): ThinMetadataError {
  return new ThinMetadataError(blocknr, 'metadata device', 'blocknr', `block ${blocknr} is not within the device's ${nrBlocks} blocks`);
}

/**
 * Opens a metadata file or block device read-only. For a block device the buffer cache is flushed
 * first (BLKFLSBUF, needs CAP_SYS_ADMIN): dm-bufio writes the metadata with bios that bypass it, so
 * its pages may be stale. A loop device's backing file needs no flush (loop writes go through the
 * file's page cache).
 */
export function openMetadataBlocks(path: string): MetadataBlocks {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    let size: number;
    if (st.isBlockDevice()) {
      flushBuffers(fd);
      size = Number(blockDeviceSizeBytes(fd));
    } else {
      size = st.size;
    }
    return fdBlocks(fd, Math.floor(size / THIN_METADATA_BLOCK_SIZE));
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** `fn` over the blocks of the metadata file or device at `path`, closed again whatever `fn` did. */
export function withMetadataBlocks<T>(path: string, fn: (blocks: MetadataBlocks) => T): T {
  const blocks = openMetadataBlocks(path);
  try {
    return fn(blocks);
  } finally {
    blocks.close();
  }
}

/**
 * Block buffers cut from shared slabs: a typed array of its own costs an ArrayBuffer allocation
 * (tens of microseconds, and GC pressure), which would be most of the cost of reading a block.
 */
function blockAllocator(): () => Uint8Array {
  // Slabs double from 4 to 64 blocks: a reader of a few blocks allocates little.
  let slabBlocks = 2;
  let slab = new Uint8Array(0);
  let used = slabBlocks;
  return () => {
    if (used === slabBlocks) {
      slabBlocks = Math.min(64, slabBlocks * 2);
      slab = new Uint8Array(slabBlocks * THIN_METADATA_BLOCK_SIZE);
      used = 0;
    }
    return slab.subarray(used * THIN_METADATA_BLOCK_SIZE, ++used * THIN_METADATA_BLOCK_SIZE);
  };
}

function fdBlocks(fd: number, nrBlocks: number): MetadataBlocks {
  let open = true;
  const alloc = blockAllocator();
  return {
    nrBlocks,
    read(blocknr: number): Uint8Array {
      if (!Number.isSafeInteger(blocknr) || blocknr < 0 || blocknr >= nrBlocks) throw pastTheEnd(blocknr, nrBlocks);
      const buf = alloc();
      let done = 0;
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, blocknr * THIN_METADATA_BLOCK_SIZE + done);
        if (n === 0) throw new ThinMetadataError(blocknr, 'metadata device', 'blocknr', `the device ends inside block ${blocknr}`);
        done += n;
      }
      return buf;
    },
    close(): void {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Blocks held in memory (tests, a copy taken earlier); `image` is a whole number of blocks. */
export function memoryMetadataBlocks(image: Uint8Array): MetadataBlocks {
  const nrBlocks = Math.floor(image.length / THIN_METADATA_BLOCK_SIZE);
  const alloc = blockAllocator();
  return {
    nrBlocks,
    read(blocknr: number): Uint8Array {
      if (!Number.isSafeInteger(blocknr) || blocknr < 0 || blocknr >= nrBlocks) throw pastTheEnd(blocknr, nrBlocks);
      const buf = alloc();
      buf.set(image.subarray(blocknr * THIN_METADATA_BLOCK_SIZE, (blocknr + 1) * THIN_METADATA_BLOCK_SIZE));
      return buf;
    },
    close(): void {},
  };
}
