// The metadata reader on images built by name: device lists, usage with shared subtrees, the held
// root, and metadata the kernel never writes (cycles, lying counts, unsorted keys, blocks past
// the end), each a ThinMetadataError naming the block and field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { DM_SM_METADATA_MAX_BLOCKS, InvalidArgumentError, THIN_METADATA_BLOCK_SIZE, ThinMetadataError } from '../../src/structs/index.js';
import {
  type MetadataBlocks,
  forEachMapping,
  openMetadataBlocks,
  readThinDevices,
  readThinUsage,
  walkBtree,
  walkBtreeNodes,
} from '../../src/thin/metadata/index.js';
import { countUsage } from '../../src/thin/metadata/usage.js';
import { MetadataImage, blockTime, buildPool, details, le64 } from '../support/thin-metadata-builder.js';

function thrown(fn: () => unknown): ThinMetadataError {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ThinMetadataError)) throw err;
    expect(err.code).toBe('EILSEQ');
    return err;
  }
  throw new Error('did not throw');
}

const range = (n: number, f: (i: number) => readonly [number, number, number?]) => Array.from({ length: n }, (_, i) => f(i));

/** The answer by brute force: every device's mappings, every data block's count. */
function naiveUsage(blocks: MetadataBlocks): Map<number, { mapped: number; exclusive: number }> {
  const meta = readThinDevices(blocks);
  const per = new Map<number, number[]>();
  const count = new Map<number, number>();
  for (const d of meta.devices) {
    const list: number[] = [];
    forEachMapping(blocks, meta.roots, d.thinId, (_v, b) => {
      list.push(b);
      count.set(b, (count.get(b) ?? 0) + 1);
    });
    per.set(d.thinId, list);
  }
  return new Map([...per].map(([id, list]) => [id, { mapped: list.length, exclusive: list.filter((b) => count.get(b) === 1).length }]));
}

describe('readThinDevices', () => {
  test('an empty pool: no devices', () => {
    const img = new MetadataImage(8);
    buildPool(img, []);
    const m = readThinDevices(img.reader());
    expect(m.devices).toEqual([]);
    expect(m.roots).toBe(m.superblock);
    expect(readThinUsage(img.reader()).devices).toEqual([]);
  });

  test('devices in thin id order with their details, across a multi-level details tree', () => {
    const img = new MetadataImage(8);
    const ids = range(300, (i) => [i * 3 + 1, 0] as const).map(([id]) => id);
    buildPool(
      img,
      ids.map((thinId) => ({
        thinId,
        details: { mappedBlocks: thinId * 2, transactionId: BigInt(thinId), creationTime: 1, snapshottedTime: 2 },
      })),
      { transactionId: 42n, time: 9 },
    );
    const m = readThinDevices(img.reader());
    expect(m.superblock.transactionId).toBe(42n);
    expect(m.devices.map((d) => d.thinId)).toEqual(ids);
    expect(m.devices[5]).toEqual({ thinId: 16, mappedBlocks: 32, transactionId: 16n, creationTime: 1, snapshottedTime: 2 });
  });

  test("root 'held' reads the snapshot copy's roots; none held is an error", () => {
    const img = new MetadataImage(8);
    buildPool(img, [{ thinId: 1 }, { thinId: 2 }]);
    const oldSb = readThinDevices(img.reader()).superblock;
    expect(thrown(() => readThinDevices(img.reader(), { root: 'held' }))).toMatchObject({ block: 0, field: 'held_root' });
    // The copy: the old roots at another block; block 0 moves on to a tree with device 3 alone.
    const held = img.alloc();
    img.superblock({ dataMappingRoot: oldSb.dataMappingRoot, deviceDetailsRoot: oldSb.deviceDetailsRoot }, held);
    const now = new MetadataImage(img.nrBlocks, img.nrBlocks);
    const before = img.image();
    for (let b = 0; b < img.nrBlocks; b++) now.put(b, before.slice(b * 4096, (b + 1) * 4096));
    const det = now.tree([[3, details()]]);
    const top = now.tree([[3, le64(now.leaf([]))]]);
    now.superblock({ dataMappingRoot: top, deviceDetailsRoot: det, heldRoot: held });
    expect(readThinDevices(now.reader()).devices.map((d) => d.thinId)).toEqual([3]);
    const h = readThinUsage(now.reader(), { root: 'held' });
    expect(h.devices.map((d) => d.thinId)).toEqual([1, 2]);
    expect(h.roots.blocknr).toBe(held);
    expect(h.superblock.heldRoot).toBe(held);
  });

  test("a root option other than 'superblock' or 'held' is EINVAL before anything is read", () => {
    const img = new MetadataImage(8);
    buildPool(img, []);
    expect(() => readThinDevices(img.reader(), { root: 'live' as 'held' })).toThrow(InvalidArgumentError);
  });

  test('unsupported incompat_flags are refused', () => {
    const img = new MetadataImage(8);
    buildPool(img, [], { incompatFlags: 1 });
    expect(thrown(() => readThinDevices(img.reader())).field).toBe('incompat_flags');
  });

  test('a thin id past 24 bits is named', () => {
    const img = new MetadataImage(8);
    buildPool(img, [{ thinId: 2 ** 24 }]);
    expect(thrown(() => readThinDevices(img.reader())).field).toBe('keys');
  });
});

describe('readThinUsage', () => {
  test('a snapshot shares its origin root: every block shared until one side writes', () => {
    const img = new MetadataImage(8);
    const maps = range(1000, (i) => [i, 5000 + i] as const);
    const origin = img.tree(maps.map(([v, d]) => [v, blockTime(d)] as const));
    buildPool(img, [
      { thinId: 1, root: origin, details: { mappedBlocks: 1000 } },
      { thinId: 2, root: origin, details: { mappedBlocks: 1000 } },
      { thinId: 7, mappings: [[0, 1]] },
    ]);
    const u = readThinUsage(img.reader());
    expect(u.devices.map((d) => [d.thinId, d.mappedBlocks, d.exclusiveBlocks, d.sharedBlocks])).toEqual([
      [1, 1000, 0, 1000],
      [2, 1000, 0, 1000],
      [7, 1, 1, 0],
    ]);
  });

  test('after writes: shared leaves under distinct internal nodes count for each device that reaches them', () => {
    const img = new MetadataImage(8);
    // Origin: 4 leaves of 100 mappings; the snapshot rewrote leaf 2 (its own data blocks there).
    const leaf = (k: number, base: number) =>
      img.leaf(range(100, (i) => [k * 100 + i, base + i] as const).map(([v, d]) => [v, blockTime(d)] as const));
    const l = [leaf(0, 0), leaf(1, 100), leaf(2, 200), leaf(3, 300)];
    const l2 = leaf(2, 900);
    const originRoot = img.internal(l.map((b, k) => [k * 100, b] as const));
    const snapRoot = img.internal([l[0]!, l[1]!, l2, l[3]!].map((b, k) => [k * 100, b] as const));
    buildPool(img, [
      { thinId: 10, root: originRoot, details: { mappedBlocks: 400 } },
      { thinId: 11, root: snapRoot, details: { mappedBlocks: 400 } },
      { thinId: 12, root: snapRoot, details: { mappedBlocks: 400 } },
    ]);
    const u = readThinUsage(img.reader());
    expect(u.devices.map((d) => [d.thinId, d.exclusiveBlocks, d.sharedBlocks])).toEqual([
      [10, 100, 300],
      [11, 0, 400],
      [12, 0, 400],
    ]);
    const naive = naiveUsage(img.reader());
    for (const d of u.devices)
      expect({ mapped: d.exclusiveBlocks + d.sharedBlocks, exclusive: d.exclusiveBlocks }).toEqual(naive.get(d.thinId));
  });

  test('one data block in two distinct leaves (of one device or two) is shared', () => {
    const img = new MetadataImage(8);
    buildPool(img, [
      {
        thinId: 1,
        mappings: [
          [0, 5],
          [1, 6],
          [2, 7],
        ],
      },
      {
        thinId: 2,
        mappings: [
          [0, 7],
          [9, 8],
        ],
      },
      {
        thinId: 3,
        mappings: [
          [0, 9],
          [1, 9],
        ],
      },
    ]);
    const u = readThinUsage(img.reader());
    expect(u.devices.map((d) => [d.exclusiveBlocks, d.sharedBlocks])).toEqual([
      [2, 1],
      [1, 1],
      [0, 2],
    ]);
  });

  test('random pools with shared subtrees agree with the brute-force count', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.nat(7), fc.nat(3), fc.nat(2)), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 3, max: 9 }),
        fc.nat(1000),
        (chunks, choices, fanout, seed) => {
          const img = new MetadataImage(8);
          // A few alternative leaves per key range; devices pick among them (shared leaves), and
          // identical picks share whole internal nodes.
          let rnd = seed;
          const next = () => {
            rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
            return rnd;
          };
          const alternatives = range(chunks, () => [0, 0] as const).map((_, c) =>
            range(3, () => [0, 0] as const).map(() =>
              img.leaf(
                range(1 + (next() % fanout), (i) => [c * 64 + i * 2, next() % 200] as const).map(([v, d]) => [v, blockTime(d)] as const),
              ),
            ),
          );
          const memo = new Map<string, number>();
          const devices = choices.map(([pick, skip, share], id) => {
            const kids = alternatives
              .map((alts, c) => [c * 64, alts[(pick + c * share) % 3]!] as const)
              .filter((_, c) => (c + skip) % 4 !== 0 || chunks === 1);
            const key = JSON.stringify(kids);
            let root = memo.get(key);
            if (root === undefined) {
              root = rebuildInternal(img, kids, fanout);
              memo.set(key, root);
            }
            return { thinId: id * 5 + 1, root };
          });
          buildPool(img, devices, { dataSpaceMapRoot: { nrBlocks: 200 } }, 4);
          const blocks = img.reader();
          const naive = naiveUsage(blocks);
          const u = readThinUsage(blocks);
          for (const d of u.devices) {
            expect({ mapped: d.exclusiveBlocks + d.sharedBlocks, exclusive: d.exclusiveBlocks }).toEqual(naive.get(d.thinId));
          }
          // Leaves read again instead of kept (no room, or room for a few): the same counts.
          const roots = devices.map((d) => d.root);
          for (const room of [0, 7, 40]) {
            expect(countUsage(blocks, roots, 200, 0, room)).toEqual(
              u.devices.map((d) => ({ mapped: d.exclusiveBlocks + d.sharedBlocks, exclusive: d.exclusiveBlocks })),
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('a data block past the data space map is named', () => {
    const img = new MetadataImage(8);
    buildPool(img, [{ thinId: 1, mappings: [[0, 10]] }], { dataSpaceMapRoot: { nrBlocks: 10 } });
    expect(thrown(() => readThinUsage(img.reader()))).toMatchObject({ struct: 'block_time', field: 'values[0]' });
  });

  test('details without a mapping tree, and a mapping tree without details', () => {
    const img = new MetadataImage(8);
    const det = img.tree([
      [1, details()],
      [2, details()],
    ]);
    const top = img.tree([[1, le64(img.leaf([]))]]);
    img.superblock({ dataMappingRoot: top, deviceDetailsRoot: det });
    expect(thrown(() => readThinUsage(img.reader())).message).toMatch(/thin id 2 has details but no mapping tree/);
    const top2 = img.tree([
      [1, le64(img.leaf([]))],
      [2, le64(img.leaf([]))],
      [3, le64(img.leaf([]))],
    ]);
    img.superblock({ dataMappingRoot: top2, deviceDetailsRoot: det });
    expect(thrown(() => readThinUsage(img.reader())).message).toMatch(/thin id 3 has a mapping tree but no details/);
  });
});

/** Internal nodes of fanout `fanout` over existing child blocks. */
function rebuildInternal(img: MetadataImage, kids: readonly (readonly [number, number])[], fanout: number): number {
  let level = kids.map(([k, b]) => [k, b] as [number, number]);
  do {
    const up: [number, number][] = [];
    for (let i = 0; i < level.length; i += fanout) {
      const chunk = level.slice(i, i + fanout);
      up.push([chunk[0]![0], img.internal(chunk)]);
    }
    level = up;
  } while (level.length > 1);
  return level[0]![1];
}

describe('corrupt trees', () => {
  /** A pool whose device 1 has mapping root `root`. */
  const pool = (img: MetadataImage, root: number) => buildPool(img, [{ thinId: 1, root }], { dataSpaceMapRoot: { nrBlocks: 1 << 20 } });
  const both = (img: MetadataImage) => {
    const blocks = img.reader();
    const meta = readThinDevices(blocks);
    return [thrown(() => readThinUsage(blocks)), thrown(() => forEachMapping(blocks, meta.roots, 1, () => {}))];
  };

  test('a cycle: a node that is its own ancestor', () => {
    const img = new MetadataImage(8);
    const a = img.alloc();
    const leafA = img.leaf([[0, blockTime(1)]]);
    img.internal(
      [
        [0, leafA],
        [10, a],
      ],
      {},
      a,
    );
    pool(img, a);
    for (const e of both(img)) expect(e.message).toMatch(/cycle|below|not below/);
  });

  test('a self-loop at the root is a cycle', () => {
    const img = new MetadataImage(8);
    const a = img.alloc();
    img.internal([[0, a]], {}, a);
    pool(img, a);
    for (const e of both(img)) expect(e.message).toMatch(/cycle/);
  });

  test('a long chain is cut at the depth bound', () => {
    const img = new MetadataImage(8);
    let b = img.leaf([[0, blockTime(1)]]);
    for (let i = 0; i < 40; i++) b = img.internal([[0, b]]);
    pool(img, b);
    for (const e of both(img)) expect(e.field).toBe('depth');
  });

  test('a child past the end of the device', () => {
    const img = new MetadataImage(8);
    const root = img.internal([[0, 5000]]);
    pool(img, root);
    for (const e of both(img)) expect(e).toMatchObject({ block: 5000, struct: 'metadata device' });
  });

  test('a device that says it is huge costs no more memory than the largest metadata device: a child past DM_SM_METADATA_MAX_BLOCKS is refused', () => {
    const img = new MetadataImage(8);
    const root = img.internal([[0, DM_SM_METADATA_MAX_BLOCKS]]);
    pool(img, root);
    const whole = img.reader();
    const huge = { nrBlocks: 2 ** 40, read: (b: number) => whole.read(b), close() {} };
    expect(thrown(() => readThinUsage(huge))).toMatchObject({ block: DM_SM_METADATA_MAX_BLOCKS, struct: 'metadata device' });
    expect(DM_SM_METADATA_MAX_BLOCKS).toBe(255 * ((1 << 14) - 64));
  });

  test('a child that is not a btree node (zeroed block): its checksum', () => {
    const img = new MetadataImage(40);
    const root = img.internal([[0, 30]]);
    pool(img, root);
    for (const e of both(img)) expect(e).toMatchObject({ block: 30, field: 'blocknr' });
  });

  test('unsorted keys in a leaf', () => {
    const img = new MetadataImage(8);
    const leaf = img.leaf([
      [5, blockTime(1)],
      [3, blockTime(2)],
    ]);
    pool(img, leaf);
    for (const e of both(img)) expect(e).toMatchObject({ block: leaf, field: 'keys[1]' });
  });

  test('a child whose keys fall outside what its parent says', () => {
    const img = new MetadataImage(8);
    const l1 = img.leaf([
      [0, blockTime(1)],
      [50, blockTime(2)],
    ]);
    const l2 = img.leaf([[40, blockTime(3)]]);
    const root = img.internal([
      [0, l1],
      [40, l2],
    ]);
    pool(img, root);
    for (const e of both(img)) expect(e.block).toBe(l1);
  });

  test('leaves at different depths', () => {
    const img = new MetadataImage(8);
    const l1 = img.leaf([[0, blockTime(1)]]);
    const l2 = img.leaf([[10, blockTime(2)]]);
    const mid = img.internal([[10, l2]]);
    const root = img.internal([
      [0, l1],
      [10, mid],
    ]);
    pool(img, root);
    for (const e of both(img)) expect(e.field).toBe('flags');
  });

  test('a lying nr_entries and a wrong value_size for the tree', () => {
    const img = new MetadataImage(8);
    const l = img.leaf([[0, blockTime(1)]], { nrEntries: 300 });
    pool(img, l);
    for (const e of both(img)) expect(e).toMatchObject({ block: l, field: 'nr_entries' });
    const img2 = new MetadataImage(8);
    const d = img2.leaf([[0, details()]]);
    pool(img2, d);
    for (const e of both(img2)) expect(e).toMatchObject({ block: d, field: 'value_size' });
  });

  test('an internal node with no entries', () => {
    const img = new MetadataImage(8);
    const root = img.internal([]);
    pool(img, root);
    for (const e of both(img)) expect(e.field).toBe('nr_entries');
  });

  test('a superblock with a bad checksum or past-the-end roots', () => {
    const img = new MetadataImage(8);
    buildPool(img, [], { badCsum: true });
    expect(thrown(() => readThinDevices(img.reader()))).toMatchObject({ block: 0, field: 'csum' });
    const img2 = new MetadataImage(8);
    img2.superblock({ dataMappingRoot: 100, deviceDetailsRoot: 200 });
    expect(thrown(() => readThinDevices(img2.reader())).block).toBe(200);
  });
});

describe('forEachMapping and walkBtree', () => {
  test('walkBtreeNodes: every node once, parents first, with depths', () => {
    const img = new MetadataImage(8);
    const root = img.tree(
      range(30, (i) => [i, 0] as const).map(([k]) => [k, le64(k)] as const),
      3,
    );
    const seen: [number, boolean, number][] = [];
    walkBtreeNodes(img.reader(), root, 8, (node, depth) => seen.push([node.blocknr, node.leaf, depth]));
    expect(seen[0]).toEqual([root, false, 0]);
    expect(seen.filter(([, leaf]) => leaf)).toHaveLength(10);
    expect(new Set(seen.filter(([, leaf]) => leaf).map(([, , d]) => d))).toEqual(new Set([3]));
    expect(new Set(seen.map(([b]) => b)).size).toBe(seen.length);
  });

  test('an empty leaf below the root is refused (only an empty tree has one)', () => {
    const img = new MetadataImage(8);
    const empty = img.leaf([], { valueSize: 8 });
    const root = img.internal(Array.from({ length: 20 }, (_, i) => [i, empty] as const));
    expect(thrown(() => walkBtree(img.reader(), root, 8, () => {}))).toMatchObject({ block: empty, field: 'nr_entries' });
    buildPool(img, [{ thinId: 1, root }]);
    expect(thrown(() => readThinUsage(img.reader()))).toMatchObject({ block: empty, field: 'nr_entries' });
  });

  test('a walk stops at more nodes than the device has blocks', () => {
    // Key ranges and non-empty nodes already keep a walk from meeting a node twice; the count is
    // the last guard, seen here with a device that says it is smaller than the tree it holds.
    const img = new MetadataImage(8);
    const root = img.internal([[5, img.internal([[5, img.leaf([[5, le64(1)]])]])]]);
    const whole = img.reader();
    const small = { nrBlocks: 2, read: (b: number) => whole.read(b), close() {} };
    expect(thrown(() => walkBtree(small, root, 8, () => {})).message).toMatch(/more nodes than the device's 2 blocks/);
    expect(() => walkBtree(whole, root, 8, () => {})).not.toThrow();
  });

  test('walkBtree visits each key once, in order', () => {
    const img = new MetadataImage(8);
    const root = img.tree(
      range(2000, (i) => [i * 2 + 1, 0] as const).map(([k]) => [k, le64(k)] as const),
      5,
    );
    const keys: number[] = [];
    walkBtree(img.reader(), root, 8, (k, leaf, i) => {
      expect(leaf.value64(i)).toBe(k);
      keys.push(k);
    });
    expect(keys).toEqual(range(2000, (i) => [i * 2 + 1, 0] as const).map(([k]) => k));
  });
});

describe('openMetadataBlocks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-meta-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a metadata file: blocks by number, the size in whole blocks, reads past the end refused', () => {
    const img = new MetadataImage(8);
    buildPool(img, [{ thinId: 3, mappings: [[1, 2]] }]);
    const path = join(dir, 'meta');
    const image = img.image();
    writeFileSync(path, Buffer.concat([image, Buffer.alloc(100)]));
    const blocks = openMetadataBlocks(path);
    try {
      expect(blocks.nrBlocks).toBe(8);
      expect(blocks.read(0)).toEqual(image.slice(0, THIN_METADATA_BLOCK_SIZE));
      expect(blocks.read(7)).toHaveLength(THIN_METADATA_BLOCK_SIZE);
      expect(readThinUsage(blocks).devices).toMatchObject([{ thinId: 3, exclusiveBlocks: 1, sharedBlocks: 0 }]);
      for (const b of [8, -1, 1.5, 2 ** 60]) expect(thrown(() => blocks.read(b))).toMatchObject({ block: b, struct: 'metadata device' });
    } finally {
      blocks.close();
      blocks.close();
    }
  });

  test('a missing file is the system error', () => {
    expect(() => openMetadataBlocks(join(dir, 'none'))).toThrow(/ENOENT/);
  });
});
