// zero-unused.mjs FILE: zeroes, in place, every 4 KiB block of a dm-thin metadata file whose count in
// the metadata space map is 0 (stale shadows the kernel left behind), so the image gzips to little.
// Reads the space map the way dm-space-map-metadata.c lays it out, independently of src/: the
// superblock's metadata_space_map_root (offset 192) names one disk_metadata_index block, whose
// entries name the bitmap blocks (2 bits a block after a 16-byte header). Prints "used N of M".
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

const BLOCK = 4096;
const SM_ROOT = 192; // thin_disk_superblock.metadata_space_map_root
const INDEX_ENTRIES_OFFSET = 16; // disk_metadata_index: csum, padding, blocknr
const INDEX_ENTRY = 16; // disk_index_entry: blocknr le64, nr_free le32, none_free_before le32
const BITMAP_HEADER = 16; // disk_bitmap_header: csum, not_used, blocknr
const ENTRIES_PER_BITMAP = (BLOCK - BITMAP_HEADER) * 4;

const file = process.argv[2];
if (!file) throw new Error('usage: zero-unused.mjs METADATA-FILE');
const fd = openSync(file, 'r+');
const read = (blocknr) => {
  const b = Buffer.alloc(BLOCK);
  if (readSync(fd, b, 0, BLOCK, blocknr * BLOCK) !== BLOCK) throw new Error(`short read of block ${blocknr}`);
  return b;
};
const num = (v) => {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`a block number past 2^53: ${v}`);
  return Number(v);
};

const sb = read(0);
const nrBlocks = num(sb.readBigUInt64LE(SM_ROOT));
const bitmapRoot = num(sb.readBigUInt64LE(SM_ROOT + 16));
const index = read(bitmapRoot);
if (num(index.readBigUInt64LE(8)) !== bitmapRoot) throw new Error(`block ${bitmapRoot} is not the metadata space map index`);
const zero = Buffer.alloc(BLOCK);
let used = 0;
for (let first = 0, i = 0; first < nrBlocks; first += ENTRIES_PER_BITMAP, i++) {
  const bitmapNr = num(index.readBigUInt64LE(INDEX_ENTRIES_OFFSET + i * INDEX_ENTRY));
  const bitmap = read(bitmapNr);
  if (num(bitmap.readBigUInt64LE(8)) !== bitmapNr) throw new Error(`block ${bitmapNr} is not a space map bitmap`);
  for (let e = 0; e < ENTRIES_PER_BITMAP && first + e < nrBlocks; e++) {
    // Both bits of an entry lie in one byte (four entries a byte): 0 means free.
    const byte = bitmap[BITMAP_HEADER + (e >> 2)];
    if ((byte >> ((e & 3) * 2)) & 3) used++;
    else writeSync(fd, zero, 0, BLOCK, (first + e) * BLOCK);
  }
}
closeSync(fd);
console.log(`used ${used} of ${nrBlocks}`);
