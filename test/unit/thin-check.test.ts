import { describe, expect, test } from 'vitest';
import { checkThinMetadata, type MetadataCheck } from '../../src/thin/metadata/check.js';
import { memoryMetadataBlocks } from '../../src/thin/metadata/blocks.js';
import { buildThinImage, type ImageSpec, reseal, setBitmapEntry, type ThinImage, XOR } from '../support/thin-check-image.js';

const BS = 4096;
const ENTRIES_PER_BITMAP = (BS - 16) * 4;

function seq(n: number, from: number, dataFrom: number): [number, number][] {
  return Array.from({ length: n }, (_, i) => [from + i, dataFrom + i] as [number, number]);
}

/** A pool with an origin, its snapshot that then diverged, a big device with internal nodes, a held root. */
const POOL: ImageSpec = {
  devices: [
    { id: 1, mappings: seq(10, 0, 0) },
    { id: 2, snapshotOf: 1 },
    { id: 5, mappings: seq(300, 100, 100) },
    { id: 7, mappings: [] },
  ],
  held: true,
  metadataBlocks: 64,
  dataBlocks: 1000,
};

function check(img: ThinImage | Uint8Array): MetadataCheck {
  return checkThinMetadata(memoryMetadataBlocks(img instanceof Uint8Array ? img : img.bytes));
}

function flip(bytes: Uint8Array, offset: number, mask: number): void {
  bytes[offset] = (bytes[offset] as number) ^ mask;
}

function view(bytes: Uint8Array, block: number): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset + block * BS, BS);
}

/** Problems as lines for readable failures. */
function lines(r: MetadataCheck): string[] {
  return r.problems.map((p) => `${p.block}: ${p.what}`);
}

describe('checkThinMetadata on clean images', () => {
  test('a pool with a snapshot, internal nodes and a held root passes', () => {
    const img = buildThinImage(POOL);
    const r = check(img);
    expect(lines(r)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.superblock?.heldRoot).toBe(img.layout.heldRoot);
    // The shared subtree root has 2 references; with the held copy, the top roots have 2.
    expect(img.metadataCounts[img.layout.subtreeRoot.get(1) as number]).toBe(2);
    expect(img.metadataCounts[img.layout.mappingRoot]).toBe(2);
    expect(img.layout.leaves.get(5)?.length).toBe(2);
  });

  test('counts above 2 live in the ref count trees', () => {
    const img = buildThinImage({
      devices: [
        { id: 1, mappings: seq(4, 0, 7) },
        { id: 2, snapshotOf: 1 },
        { id: 3, snapshotOf: 1 },
      ],
      held: true,
    });
    expect(img.metadataCounts[img.layout.subtreeRoot.get(1) as number]).toBe(3);
    expect(check(img).problems).toEqual([]);
  });

  test('an empty pool passes', () => {
    expect(check(buildThinImage({ devices: [] })).ok).toBe(true);
  });
});

describe('checkThinMetadata reports each kind of damage', () => {
  test('superblock checksum', () => {
    const img = buildThinImage(POOL);
    flip(img.bytes, 400, 1);
    const r = check(img);
    expect(r.ok).toBe(false);
    expect(r.superblock).toBeNull();
    expect(r.problems[0]?.block).toBe(0);
    expect(r.problems[0]?.what).toMatch(/csum/);
  });

  test('superblock magic, version, block sizes and blocknr', () => {
    const magic = buildThinImage(POOL);
    view(magic.bytes, 0).setBigUint64(32, 1n, true);
    reseal(magic.bytes, 0, XOR.superblock);
    expect(lines(check(magic)).join('\n')).toMatch(/magic/);

    for (const [off, value, re] of [
      [40, 3, /version: 3 is not 1..2/],
      [340, 16, /metadata_block_size: 16 sectors/],
    ] as [number, number, RegExp][]) {
      const bad = buildThinImage(POOL);
      view(bad.bytes, 0).setUint32(off, value, true);
      reseal(bad.bytes, 0, XOR.superblock);
      const r = check(bad);
      expect(r.superblock).toBeNull();
      expect(lines(r).join('\n')).toMatch(re);
    }

    const fields = buildThinImage(POOL);
    view(fields.bytes, 0).setUint32(336, 100, true);
    view(fields.bytes, 0).setUint32(360, 1, true);
    reseal(fields.bytes, 0, XOR.superblock);
    const r = check(fields);
    expect(r.superblock).not.toBeNull();
    const text = lines(r).join('\n');
    expect(text).toMatch(/data_block_size 100/);
    expect(text).toMatch(/incompat_flags 1/);

    const blocknr = buildThinImage(POOL);
    view(blocknr.bytes, 0).setBigUint64(8, 5n, true);
    reseal(blocknr.bytes, 0, XOR.superblock);
    expect(lines(check(blocknr)).join('\n')).toMatch(/blocknr: says 5, read from 0/);
  });

  test('a flipped byte in a mapping leaf names the leaf', () => {
    const img = buildThinImage(POOL);
    const leaf = img.layout.leaves.get(5)?.[1] as number;
    flip(img.bytes, leaf * BS + 600, 0x40);
    const r = check(img);
    expect(r.ok).toBe(false);
    expect(r.problems.some((p) => p.block === leaf && /thin 5/.test(p.what) && /csum/.test(p.what))).toBe(true);
  });

  test('a flipped byte in an internal node names the node', () => {
    const img = buildThinImage(POOL);
    const root = img.layout.subtreeRoot.get(5) as number;
    flip(img.bytes, root * BS + 40, 1);
    const r = check(img);
    expect(r.problems.some((p) => p.block === root && /csum/.test(p.what))).toBe(true);
  });

  test('keys out of order, and a child key below its parent key', () => {
    const img = buildThinImage(POOL);
    const leaf = img.layout.leaves.get(1)?.[0] as number;
    view(img.bytes, leaf).setBigUint64(32 + 8 * 3, 1n, true);
    reseal(img.bytes, leaf, XOR.btree);
    expect(lines(check(img)).join('\n')).toMatch(/node_header.keys\[3\]: 1 does not follow 2/);

    const parent = buildThinImage(POOL);
    const root = parent.layout.subtreeRoot.get(5) as number;
    view(parent.bytes, root).setBigUint64(32 + 8, 99999n, true); // second child's key above its first key
    reseal(parent.bytes, root, XOR.btree);
    expect(lines(check(parent)).join('\n')).toMatch(/keys\[0\]: \d+ is below 99999, where its parent puts this node/);
  });

  test('a node whose blocknr is not where it lies', () => {
    const img = buildThinImage(POOL);
    const leaf = img.layout.leaves.get(1)?.[0] as number;
    view(img.bytes, leaf).setBigUint64(8, 3n, true);
    reseal(img.bytes, leaf, XOR.btree);
    expect(check(img).problems.some((p) => p.block === leaf && /blocknr: says 3/.test(p.what))).toBe(true);
  });

  test('too many entries, too few entries, bad value size, bad flags', () => {
    for (const [off, value, re] of [
      [16, 253, /nr_entries/],
      [24, 16, /value_size/],
      [4, 3, /flags/],
      [20, 250, /max_entries/],
    ] as [number, number, RegExp][]) {
      const img = buildThinImage(POOL);
      const leaf = img.layout.leaves.get(5)?.[0] as number;
      view(img.bytes, leaf).setUint32(off, value, true);
      reseal(img.bytes, leaf, XOR.btree);
      expect(lines(check(img)).join('\n')).toMatch(re);
    }
    const few = buildThinImage(POOL);
    const leaf = few.layout.leaves.get(5)?.[0] as number;
    view(few.bytes, leaf).setUint32(16, 10, true);
    reseal(few.bytes, leaf, XOR.btree);
    expect(lines(check(few)).join('\n')).toMatch(/10 entries, fewer than max_entries\/3 = 84/);
  });

  test('device details: mapped_blocks, a missing device', () => {
    const img = buildThinImage(POOL);
    const d = img.layout.detailsRoot;
    const max = Math.floor((BS - 32) / 32 / 3) * 3;
    // thin 5 is the third entry: its mapped_blocks
    view(img.bytes, d).setBigUint64(32 + 8 * max + 24 * 2, 299n, true);
    reseal(img.bytes, d, XOR.btree);
    expect(lines(check(img)).join('\n')).toMatch(/thin 5: disk_device_details.mapped_blocks 299, but its mapping tree holds 300/);

    const missing = buildThinImage(POOL);
    view(missing.bytes, missing.layout.detailsRoot).setUint32(16, 3, true);
    reseal(missing.bytes, missing.layout.detailsRoot, XOR.btree);
    expect(lines(check(missing)).join('\n')).toMatch(/thin 7: in the mapping tree but not in the device details tree/);
  });

  test('a wrong data reference count in a bitmap', () => {
    const img = buildThinImage(POOL);
    setBitmapEntry(img.bytes, img.layout.dataBitmaps[0] as number, 150, 2);
    const r = check(img);
    expect(lines(r)).toContain('null: data space map: data block 150 has count 2, but 1 references were found');
  });

  test('a leaked data block and a wrong nr_allocated', () => {
    const img = buildThinImage(POOL);
    setBitmapEntry(img.bytes, img.layout.dataBitmaps[0] as number, 900, 1);
    const text = lines(check(img)).join('\n');
    expect(text).toMatch(/data block 900 has count 1, but 0 references/);
    expect(text).toMatch(/data space map: disk_sm_root.nr_allocated 310, but the bitmaps count 311/);
  });

  test('a snapshot-shared leaf counts once per leaf, not once per device', () => {
    const img = buildThinImage(POOL);
    // data block 3 is in the one leaf shared by thins 1 and 2: the kernel stores 1.
    expect(img.dataCounts[3]).toBe(1);
    setBitmapEntry(img.bytes, img.layout.dataBitmaps[0] as number, 3, 2);
    expect(lines(check(img))).toContain('null: data space map: data block 3 has count 2, but 1 references were found');
  });

  test('a wrong metadata reference count, and a count of 3 with no ref count tree entry', () => {
    const img = buildThinImage(POOL);
    const root = img.layout.subtreeRoot.get(1) as number;
    setBitmapEntry(img.bytes, img.layout.metadataBitmaps[0] as number, root, 1);
    expect(lines(check(img))).toContain(`null: metadata space map: metadata block ${root} has count 1, but 2 references were found`);

    const three = buildThinImage(POOL);
    setBitmapEntry(three.bytes, three.layout.metadataBitmaps[0] as number, root, 3);
    expect(lines(check(three)).join('\n')).toMatch(
      new RegExp(`metadata block ${root} has bitmap count 3 but no entry in the ref count tree`),
    );
  });

  test('a count above 2 that the ref count tree gets wrong', () => {
    const img = buildThinImage({
      devices: [
        { id: 1, mappings: seq(4, 0, 7) },
        { id: 2, snapshotOf: 1 },
        { id: 3, snapshotOf: 1 },
      ],
      held: true,
    });
    const root = img.layout.subtreeRoot.get(1) as number;
    const leaf = img.layout.metadataRefCountRoot;
    const max = Math.floor((BS - 32) / 12 / 3) * 3;
    expect(view(img.bytes, leaf).getBigUint64(32, true)).toBe(BigInt(root));
    view(img.bytes, leaf).setUint32(32 + 8 * max, 4, true);
    reseal(img.bytes, leaf, XOR.btree);
    expect(lines(check(img))).toEqual([`null: metadata space map: metadata block ${root} has count 4, but 3 references were found`]);
  });

  test('a bitmap checksum, an index checksum', () => {
    const img = buildThinImage(POOL);
    const bm = img.layout.dataBitmaps[0] as number;
    flip(img.bytes, bm * BS + 100, 1);
    expect(check(img).problems.some((p) => p.block === bm && /disk_bitmap_header.csum/.test(p.what))).toBe(true);

    const idx = buildThinImage(POOL);
    flip(idx.bytes, idx.layout.metadataIndex * BS + 20, 1);
    expect(check(idx).problems.some((p) => p.block === idx.layout.metadataIndex && /csum/.test(p.what))).toBe(true);
  });

  test('a mapping to a data block past nr_blocks', () => {
    const img = buildThinImage(POOL);
    const leaf = img.layout.leaves.get(1)?.[0] as number;
    const max = Math.floor((BS - 32) / 16 / 3) * 3;
    view(img.bytes, leaf).setBigUint64(32 + 8 * max, (5000n << 24n) | 1n, true);
    reseal(img.bytes, leaf, XOR.btree);
    expect(lines(check(img)).join('\n')).toMatch(/thin 1: virtual block 0 maps data block 5000, past data space map nr_blocks 1000/);
  });

  test('a truncated device', () => {
    const img = buildThinImage(POOL);
    const r = check(img.bytes.slice(0, 10 * BS));
    expect(r.ok).toBe(false);
    expect(lines(r).join('\n')).toMatch(/metadata space map nr_blocks 64, but the device holds 10 blocks/);
    expect(lines(r).join('\n')).toMatch(/past the device's 10 blocks/);
    expect(check(new Uint8Array(0)).problems[0]?.what).toMatch(/no superblock/);
  });

  test('a cycle: a node that is its own child', () => {
    const img = buildThinImage(POOL);
    const root = img.layout.subtreeRoot.get(5) as number;
    const max = Math.floor((BS - 32) / 16 / 3) * 3;
    view(img.bytes, root).setBigUint64(32 + 8 * max + 8, BigInt(root), true);
    reseal(img.bytes, root, XOR.btree);
    expect(lines(check(img)).join('\n')).toMatch(new RegExp(`btree node ${root} is its own ancestor`));
  });

  test('the held superblock copy is checked too', () => {
    const img = buildThinImage(POOL);
    flip(img.bytes, img.layout.heldRoot * BS + 300, 1);
    expect(check(img).problems.some((p) => p.block === img.layout.heldRoot && /held_root/.test(p.what))).toBe(true);
  });

  test('a child pointer past the end of the metadata', () => {
    const img = buildThinImage(POOL);
    view(img.bytes, img.layout.mappingRoot).setBigUint64(32 + 8 * 252, 1n << 40n, true);
    reseal(img.bytes, img.layout.mappingRoot, XOR.btree);
    expect(lines(check(img)).join('\n')).toMatch(/block 1099511627776 is past metadata space map nr_blocks 64/);
  });
});

describe('checkThinMetadata is total and bounded', () => {
  test('any flipped byte or garbage block gives an answer, never a throw', () => {
    const base = buildThinImage(POOL);
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 300; i++) {
      const bytes = base.bytes.slice();
      const block = rand(24);
      if (i % 3 === 0) {
        for (let k = 4; k < BS; k++) bytes[block * BS + k] = rand(256);
        // garbage behind a valid checksum reaches the decoders' field checks
        reseal(bytes, block, [XOR.btree, XOR.bitmap, XOR.index, XOR.superblock][rand(4)] as number);
      } else flip(bytes, block * BS + rand(BS), 1 << rand(8));
      const r = check(bytes);
      expect(r.problems.length).toBeLessThanOrEqual(1001);
      for (const p of r.problems) expect(p.what).not.toMatch(/\n/);
    }
  });

  test('a huge lying data nr_blocks is reported without walking it', () => {
    const img = buildThinImage(POOL);
    view(img.bytes, 0).setBigUint64(64, 2n ** 50n, true);
    reseal(img.bytes, 0, XOR.superblock);
    expect(lines(check(img)).join('\n')).toMatch(/nr_blocks 1125899906842624 needs/);
  });
});

test('entries per bitmap matches the format', () => {
  expect(ENTRIES_PER_BITMAP).toBe(16320);
});
