// The pure decoders of dm-thin metadata blocks, on blocks built by name (test/support).
import { describe, expect, test } from 'vitest';
import {
  BITMAP_CSUM_XOR,
  BTREE_CSUM_XOR,
  ENTRIES_PER_BLOCK,
  INDEX_CSUM_XOR,
  SUPERBLOCK_CSUM_XOR,
  THIN_METADATA_BLOCK_SIZE,
  ThinMetadataError,
  bitmapCount,
  blockChecksum,
  btreeMaxEntries,
  crc32c,
  decodeBitmapHeader,
  decodeBlockTime,
  decodeBtreeNode,
  decodeDeviceDetails,
  decodeMetadataIndex,
  decodeThinSuperblock,
} from '../../src/structs/index.js';
import { MetadataImage, blockTime, details, le64 } from '../support/thin-metadata-builder.js';

const text = (s: string) => new TextEncoder().encode(s);

function thrown(fn: () => unknown): ThinMetadataError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ThinMetadataError);
    return err as ThinMetadataError;
  }
  throw new Error('did not throw');
}

describe('crc32c', () => {
  test('known vectors of CRC-32C (Castagnoli)', () => {
    expect(crc32c(text('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43); // 32 bytes of 0xff
    const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(crc32c(inc)).toBe(0x46dd794e); // 00..1f
    expect(crc32c(inc.slice().reverse())).toBe(0x113fdb5c); // 1f..00
  });

  test('a seed continues the checksum; every length and alignment agrees with the bytewise form', () => {
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);
    const bytewise = (d: Uint8Array): number => {
      let c = 0xffffffff;
      for (const x of d) {
        c ^= x;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      }
      return (c ^ 0xffffffff) >>> 0;
    };
    for (let len = 0; len < 40; len++) {
      for (let start = 0; start < 9; start++)
        expect(crc32c(data.subarray(start, start + len))).toBe(bytewise(data.subarray(start, start + len)));
    }
    expect(crc32c(data.subarray(100), crc32c(data.subarray(0, 100)))).toBe(crc32c(data));
  });

  test('blockChecksum is dm_bm_checksum: crc32c(~0) over [4..) without the final inversion, ^ xor', () => {
    const b = Uint8Array.from({ length: THIN_METADATA_BLOCK_SIZE }, (_, i) => i & 0xff);
    const standard = crc32c(b.subarray(4));
    expect(blockChecksum(b, 0)).toBe((standard ^ 0xffffffff) >>> 0);
    expect(blockChecksum(b, SUPERBLOCK_CSUM_XOR)).toBe((standard ^ 0xffffffff ^ 160774) >>> 0);
    b[0] = 99; // the csum field itself is not covered
    expect(blockChecksum(b, BTREE_CSUM_XOR)).toBe((standard ^ 0xffffffff ^ 121107) >>> 0);
  });
});

describe('thin_disk_superblock', () => {
  const img = new MetadataImage(32);
  img.superblock({
    dataMappingRoot: 7,
    deviceDetailsRoot: 9,
    time: 5,
    transactionId: 2n ** 64n - 1n,
    heldRoot: 12,
    flags: 1,
    dataSpaceMapRoot: { nrBlocks: 1000, nrAllocated: 10, bitmapRoot: 3, refCountRoot: 4 },
    metadataSpaceMapRoot: { nrBlocks: 32, nrAllocated: 8, bitmapRoot: 5, refCountRoot: 6 },
    dataBlockSize: 128,
    compatFlags: 1,
    compatRoFlags: 2,
    incompatFlags: 3,
  });

  test('decodes every field at its kernel offset', () => {
    const sb = decodeThinSuperblock(img.get(0), 0);
    expect(sb).toMatchObject({
      flags: 1,
      blocknr: 0,
      version: 2,
      time: 5,
      transactionId: 2n ** 64n - 1n,
      heldRoot: 12,
      dataSpaceMapRoot: { nrBlocks: 1000, nrAllocated: 10, bitmapRoot: 3, refCountRoot: 4 },
      metadataSpaceMapRoot: { nrBlocks: 32, nrAllocated: 8, bitmapRoot: 5, refCountRoot: 6 },
      dataMappingRoot: 7,
      deviceDetailsRoot: 9,
      dataBlockSize: 128,
      metadataBlockSize: 8,
      metadataNrBlocks: 32,
      compatFlags: 1,
      compatRoFlags: 2,
      incompatFlags: 3,
    });
    expect([...sb.uuid]).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
  });

  test.each([
    ['csum', { badCsum: true }],
    ['magic', { magic: 27022011n }],
    ['blocknr', { blocknrField: 3 }],
    ['version', { version: 3 }],
    ['metadata_block_size', { metadataBlockSize: 16 }],
    ['data_mapping_root', { dataMappingRoot: 2 ** 53 }],
  ] as const)('a wrong %s is a ThinMetadataError naming it', (field, f) => {
    const bad = new MetadataImage(4);
    bad.superblock({ dataMappingRoot: 1, deviceDetailsRoot: 2, ...f });
    const e = thrown(() => decodeThinSuperblock(bad.get(0), 0));
    expect(e).toMatchObject({ code: 'EILSEQ', block: 0, struct: 'thin_disk_superblock', field });
  });

  test('read at another block than it says: blocknr; a short buffer: a size error', () => {
    expect(thrown(() => decodeThinSuperblock(img.get(0), 1)).field).toBe('blocknr');
    expect(thrown(() => decodeThinSuperblock(img.get(0).slice(0, 512), 0)).field).toBe('(size)');
  });
});

describe('btree node', () => {
  const img = new MetadataImage(32);

  test('a leaf: counts, keys, values; an internal node: children', () => {
    const leaf = img.leaf([
      [3, blockTime(100, 7)],
      [9, blockTime(2 ** 40 - 1, 0xffffff)],
    ]);
    const n = decodeBtreeNode(img.get(leaf), leaf, 8);
    expect(n).toMatchObject({ blocknr: leaf, leaf: true, nrEntries: 2, maxEntries: 252, valueSize: 8 });
    expect([n.key(0), n.key(1)]).toEqual([3, 9]);
    expect(decodeBlockTime(n.block, n.valueOffset(0))).toEqual({ dataBlock: 100, time: 7 });
    expect(decodeBlockTime(n.block, n.valueOffset(1))).toEqual({ dataBlock: 2 ** 40 - 1, time: 0xffffff });
    expect(n.valueOffset(1)).toBe(32 + 8 * 252 + 8);

    const inner = img.internal([
      [0, leaf],
      [50, 17],
    ]);
    const i = decodeBtreeNode(img.get(inner), inner, 24);
    expect(i.leaf).toBe(false);
    expect([i.child(0), i.child(1)]).toEqual([leaf, 17]);
    expect(thrown(() => n.child(0)).field).toBe('flags');
    expect(thrown(() => n.key(2)).field).toBe('keys');
  });

  test('max_entries is calc_max_entries: 3n pairs that fit after the header', () => {
    expect(btreeMaxEntries(8)).toBe(252);
    expect(btreeMaxEntries(24)).toBe(126);
    expect(btreeMaxEntries(16)).toBe(168);
    expect(btreeMaxEntries(4)).toBe(336);
  });

  test.each([
    ['csum', { badCsum: true }],
    ['blocknr', { blocknrField: 1 }],
    ['flags', { flags: 3 }],
    ['flags', { flags: 0 }],
    ['value_size', { valueSize: 24, maxEntries: 126 }],
    ['max_entries', { maxEntries: 251 }],
    ['max_entries', { maxEntries: 0xffffffff }],
    ['nr_entries', { nrEntries: 253 }],
  ] as const)('%s wrong: ThinMetadataError', (field, opts) => {
    const b = img.leaf([[1, blockTime(1)]], opts);
    expect(thrown(() => decodeBtreeNode(img.get(b), b, 8))).toMatchObject({ block: b, struct: 'node_header', field });
  });

  test('an internal node must hold 8-byte values, whatever its leaves hold', () => {
    const b = img.node('internal', [[1, details()]], { valueSize: 24 });
    expect(thrown(() => decodeBtreeNode(img.get(b), b, 24)).field).toBe('value_size');
  });

  test('a key or child past 2^53 is named', () => {
    const b = img.leaf([[2n ** 60n, blockTime(1)]]);
    expect(thrown(() => decodeBtreeNode(img.get(b), b, 8).key(0)).field).toBe('keys[0]');
    const c = img.internal([[0, 2 ** 53]]);
    expect(thrown(() => decodeBtreeNode(img.get(c), c, 8).child(0)).field).toBe('values[0]');
  });
});

describe('device details, space map index and bitmaps', () => {
  test('disk_device_details is 24 packed bytes', () => {
    const buf = new Uint8Array(30);
    buf.set(details({ mappedBlocks: 77, transactionId: 2n ** 63n, creationTime: 4, snapshottedTime: 6 }), 3);
    expect(decodeDeviceDetails(buf, 3)).toEqual({ mappedBlocks: 77, transactionId: 2n ** 63n, creationTime: 4, snapshottedTime: 6 });
    expect(thrown(() => decodeDeviceDetails(buf, 7, 12))).toMatchObject({ block: 12, struct: 'disk_device_details' });
    buf.set(le64(2n ** 53n), 3);
    expect(thrown(() => decodeDeviceDetails(buf, 3)).field).toBe('mapped_blocks');
  });

  test('disk_metadata_index: checked, 255 entries', () => {
    const img = new MetadataImage(8);
    const at = img.metadataIndex([
      { blocknr: 5, nrFree: 100, noneFreeBefore: 3 },
      { blocknr: 6, nrFree: ENTRIES_PER_BLOCK, noneFreeBefore: 0 },
    ]);
    const idx = decodeMetadataIndex(img.get(at), at);
    expect(idx).toHaveLength(255);
    expect(idx.slice(0, 3)).toEqual([
      { blocknr: 5, nrFree: 100, noneFreeBefore: 3 },
      { blocknr: 6, nrFree: 16320, noneFreeBefore: 0 },
      { blocknr: 0, nrFree: 0, noneFreeBefore: 0 },
    ]);
    const bad = img.metadataIndex([], { badCsum: true });
    expect(thrown(() => decodeMetadataIndex(img.get(bad), bad))).toMatchObject({ struct: 'disk_metadata_index', field: 'csum' });
    expect(thrown(() => decodeMetadataIndex(img.get(at), at + 1)).field).toBe('blocknr');
    expect(INDEX_CSUM_XOR).toBe(160478);
  });

  test('bitmap: entry b uses bit 2b as the high bit and 2b+1 as the low bit of its le64 word', () => {
    expect(ENTRIES_PER_BLOCK).toBe(16320);
    const img = new MetadataImage(8);
    const counts = Array.from({ length: 100 }, (_, i) => (i * 7) % 4);
    const at = img.bitmap(counts);
    const b = img.get(at);
    decodeBitmapHeader(b, at);
    for (let e = 0; e < 100; e++) expect(bitmapCount(b, e)).toBe(counts[e]);
    // By hand: entry 0 = 2 sets bit 0 of the first word; entry 1 = 1 sets bit 3.
    const raw = new Uint8Array(THIN_METADATA_BLOCK_SIZE);
    raw[16] = 0b0000_1001;
    expect(bitmapCount(raw, 0)).toBe(2);
    expect(bitmapCount(raw, 1)).toBe(1);
    raw[16 + 8 + 7] = 0b1100_0000; // the last entry of the second word (entry 63): both bits
    expect(bitmapCount(raw, 63)).toBe(3);
    expect(thrown(() => bitmapCount(raw, ENTRIES_PER_BLOCK)).field).toBe('entry');
    const bad = img.bitmap([1], { badCsum: true });
    expect(thrown(() => decodeBitmapHeader(img.get(bad), bad))).toMatchObject({ struct: 'disk_bitmap_header', field: 'csum' });
    expect(BITMAP_CSUM_XOR).toBe(240779);
  });
});
