// checkThinMetadata against thin_check (thin-provisioning-tools) on metadata the kernel wrote: a
// pool with thin devices, a snapshot chain, dd writes, discards, a delete and a held metadata
// snapshot, deactivated; then copies of its metadata damaged on purpose, one way each.
import { spawnSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { thinId } from '../../src/dm/names.js';
import { attachLoop, detachLoop, releaseLoop } from '../../src/loop/index.js';
import { createSnap, createThin, deleteThin, reserveMetadataSnap } from '../../src/dm/thin-messages.js';
import { checkThinMetadata, type MetadataCheck } from '../../src/thin/metadata/check.js';
import {
  type BtreeNode,
  decodeBlockTime,
  decodeBtreeNode,
  decodeIndexEntry,
  decodeMetadataIndex,
  decodeThinSuperblock,
  type ThinSuperblock,
} from '../../src/structs/index.js';
import { withMetadataBlocks } from '../../src/thin/metadata/blocks.js';
import { reseal, setBitmapEntry, XOR } from '../support/thin-check-image.js';
import { activateThin, dmName, kernelHooks, LoopScratch, makePool, openDm, type TestPool } from './support/env.js';

kernelHooks({ sweepEach: false });

const BS = 4096;
const MiB = 1024 * 1024;
const BLOCK_SECTORS = 128; // 64 KiB data blocks
const BLOCK_BYTES = BLOCK_SECTORS * 512;
const THIN_SECTORS = 64n * 2048n; // 64 MiB each
const ENTRIES_PER_BITMAP = (BS - 16) * 4;

interface ThinCheckRun {
  status: number;
  output: string;
}

/** thin_check over a loop device of the file: it opens with O_DIRECT, which the guest's tmpfs refuses. */
async function thinCheck(path: string): Promise<ThinCheckRun> {
  const loop = await attachLoop(path);
  try {
    const r = spawnSync('thin_check', [loop.path], { encoding: 'utf8' });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}`.trim().replace(/\s*\n\s*/g, ' | ') };
  } finally {
    releaseLoop(loop);
    await detachLoop(loop, { expectBackingFile: path });
  }
}

function ours(path: string): MetadataCheck {
  return withMetadataBlocks(path, checkThinMetadata);
}

function dd(path: string, offsetBlocks: number, nrBlocks: number): void {
  const r = spawnSync(
    'dd',
    [
      'if=/dev/urandom',
      `of=${path}`,
      `bs=${BLOCK_BYTES}`,
      `seek=${offsetBlocks}`,
      `count=${nrBlocks}`,
      'oflag=direct',
      'conv=fsync,notrunc',
    ],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`dd ${path}: ${r.stderr}`);
}

function blkdiscard(path: string, offsetBlocks: number, nrBlocks: number): void {
  const r = spawnSync('blkdiscard', ['-o', String(offsetBlocks * BLOCK_BYTES), '-l', String(nrBlocks * BLOCK_BYTES), path], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`blkdiscard ${path}: ${r.stderr}`);
}

/** Read-only navigation of an image, to find the block each damage goes to. */
class Image {
  readonly sb: ThinSuperblock;
  constructor(readonly bytes: Uint8Array) {
    this.sb = decodeThinSuperblock(this.block(0), 0);
  }
  block(b: number): Uint8Array {
    return this.bytes.subarray(b * BS, (b + 1) * BS);
  }
  node(b: number, valueSize: number): BtreeNode {
    return decodeBtreeNode(this.block(b), b, valueSize);
  }
  /** The leftmost leaf under root. */
  firstLeaf(root: number, valueSize: number): BtreeNode {
    let n = this.node(root, valueSize);
    while (!n.leaf) n = this.node(n.value64(0), valueSize);
    return n;
  }
  subtreeRoot(id: number): number {
    let n = this.node(this.sb.dataMappingRoot, 8);
    for (;;) {
      let i = 0;
      while (i + 1 < n.nrEntries && n.key(i + 1) <= id) i++;
      if (n.leaf) {
        if (n.key(i) !== id) throw new Error(`no thin ${id}`);
        return n.value64(i);
      }
      n = this.node(n.value64(i), 8);
    }
  }
  firstDataBitmap(): number {
    const leaf = this.firstLeaf(this.sb.dataSpaceMapRoot.bitmapRoot, 16);
    return decodeIndexEntry(leaf.block, leaf.valueOffset(0)).blocknr;
  }
  metadataBitmap(): number {
    return (
      decodeMetadataIndex(this.block(this.sb.metadataSpaceMapRoot.bitmapRoot), this.sb.metadataSpaceMapRoot.bitmapRoot)[0] as {
        blocknr: number;
      }
    ).blocknr;
  }
}

function flip(bytes: Uint8Array, at: number): void {
  bytes[at] = (bytes[at] as number) ^ 0x5a;
}

describe('checkThinMetadata against thin_check on kernel-written metadata', () => {
  const scratch = new LoopScratch('thin-check');
  let dm: DeviceMapper;
  let pool: TestPool;
  let clean: string;

  beforeAll(async () => {
    dm = openDm();
    pool = await makePool(dm, scratch, 'chk', { dataBytes: 256 * MiB, metaBytes: 8 * MiB, blockSectors: BLOCK_SECTORS });
    const ref = { name: pool.name };
    const activate = async (id: number) => {
      await activateThin(dm, pool, `chk-thin-${id}`, id, THIN_SECTORS);
      return `/dev/mapper/${dmName(`chk-thin-${id}`)}`;
    };
    const deactivate = (id: number) => dm.remove({ name: dmName(`chk-thin-${id}`) });

    // thin 1: 400 blocks, enough for a mapping tree with an internal node; a discard punches a hole.
    createThin(dm, ref, thinId(1));
    const t1 = await activate(1);
    dd(t1, 0, 400);
    blkdiscard(t1, 100, 20);
    await deactivate(1);
    // A snapshot chain: 2 of 1, 3 of 2, each written after it was taken.
    createSnap(dm, ref, thinId(2), thinId(1));
    const t2 = await activate(2);
    dd(t2, 10, 30);
    await deactivate(2);
    createSnap(dm, ref, thinId(3), thinId(2));
    const t3 = await activate(3);
    dd(t3, 300, 5);
    await deactivate(3);
    // thin 4 written, then deleted; thin 5 written sparsely.
    createThin(dm, ref, thinId(4));
    dd(await activate(4), 0, 50);
    await deactivate(4);
    deleteThin(dm, ref, thinId(4));
    createThin(dm, ref, thinId(5));
    const t5 = await activate(5);
    for (const at of [0, 77, 500, 900]) dd(t5, at, 3);
    // A held metadata snapshot, then writes that make the live trees diverge from it.
    reserveMetadataSnap(dm, ref);
    dd(t5, 1000, 4);
    await deactivate(5);
    const t1b = await activate(1);
    dd(t1b, 390, 20);
    await deactivate(1);
    await dm.remove({ name: pool.name });
    clean = join(scratch.dir, 'clean.meta');
    // Read and write, not copyFileSync: the guest's file system answers copy_file_range with nothing.
    writeFileSync(clean, readFileSync(pool.meta.path));
    expect(readFileSync(clean).length).toBe(8 * MiB);
  });

  afterAll(async () => {
    dm?.close();
    await scratch.cleanup();
  });

  test('the clean metadata passes both', async () => {
    const tc = await thinCheck(clean);
    const r = ours(clean);
    console.log(`clean: thin_check exit ${tc.status}: ${tc.output}`);
    expect(tc.status).toBe(0);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const img = new Image(readFileSync(clean));
    expect(img.sb.heldRoot).toBeGreaterThan(0);
    expect(img.node(img.subtreeRoot(1), 8).leaf).toBe(false);
  });

  /** A damaged copy of the clean metadata: both tools run on it. */
  async function damaged(
    name: string,
    damage: (bytes: Uint8Array, img: Image, path: string) => void,
  ): Promise<{ tc: ThinCheckRun; r: MetadataCheck }> {
    const path = join(scratch.dir, `${name}.meta`);
    const bytes = new Uint8Array(readFileSync(clean));
    damage(bytes, new Image(bytes), path);
    if (name !== 'truncated') writeFileSync(path, bytes);
    const tc = await thinCheck(path);
    const r = ours(path);
    console.log(
      `${name}: thin_check exit ${tc.status}: ${tc.output}\n${name}: ours: ${r.problems.map((p) => `[${p.block}] ${p.what}`).join(' | ')}`,
    );
    return { tc, r };
  }

  const cases: [string, (bytes: Uint8Array, img: Image, path: string) => void, RegExp][] = [
    [
      'mapping-leaf',
      (b, img) => flip(b, img.firstLeaf(img.subtreeRoot(1), 8).blocknr * BS + 700),
      /mapping tree of thin 1: thin metadata block \d+: node_header.csum/,
    ],
    [
      'internal-node',
      (b, img) => flip(b, img.subtreeRoot(1) * BS + 40),
      /mapping tree of thin 1: thin metadata block \d+: node_header.csum/,
    ],
    [
      'details-tree',
      (b, img) => flip(b, img.firstLeaf(img.sb.deviceDetailsRoot, 24).blocknr * BS + 64),
      /device details tree: thin metadata block \d+: node_header.csum/,
    ],
    [
      'keys-out-of-order',
      (b, img) => {
        const leaf = img.firstLeaf(img.subtreeRoot(5), 8);
        new DataView(b.buffer, b.byteOffset + leaf.blocknr * BS).setBigUint64(32 + 8, 0n, true);
        reseal(b, leaf.blocknr, XOR.btree);
      },
      /mapping tree of thin 5: thin metadata block \d+: node_header.keys\[1\]: 0 does not follow 0/,
    ],
    [
      'metadata-count',
      (b, img) => setBitmapEntry(b, img.metadataBitmap(), img.firstLeaf(img.subtreeRoot(5), 8).blocknr, 2),
      /metadata space map: metadata block \d+ has count 2, but 1 references were found/,
    ],
    [
      'truncated',
      (b, _img, path) => {
        writeFileSync(path, b);
        truncateSync(path, 16 * BS);
      },
      /but the device holds 16 blocks/,
    ],
    ['superblock', (b) => flip(b, 400), /thin_disk_superblock.csum: \d+ != \d+ computed/],
    [
      'bitmap-csum',
      (b, img) => flip(b, img.firstDataBitmap() * BS + 200),
      /data space map bitmap 0: thin metadata block \d+: disk_bitmap_header.csum/,
    ],
  ];

  test.each(cases)('%s: thin_check fails and so do we', async (name, damage, want) => {
    const { tc, r } = await damaged(name, damage);
    expect(tc.status).not.toBe(0);
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => p.what).join('\n')).toMatch(want);
  });

  // thin_check 0.9.0 (the guest's) does not compare data counts: metadata_checker.cc leaves its
  // data space map comparison off ("data block reference counting is disabled"); 1.x compares them.
  // A mapped block stored as free would be handed out again by the kernel: we report it.
  test('a mapped data block stored as free: reported by us; thin_check 0.9.0 does not count data blocks', async () => {
    const { tc, r } = await damaged('data-count', (b, img) => {
      const leaf = img.firstLeaf(img.subtreeRoot(5), 8);
      const { dataBlock } = decodeBlockTime(leaf.block, leaf.valueOffset(0));
      expect(dataBlock).toBeLessThan(ENTRIES_PER_BITMAP);
      setBitmapEntry(b, img.firstDataBitmap(), dataBlock, 0);
    });
    expect(tc.status).toBe(0);
    expect(r.ok).toBe(false);
    expect(r.problems.map((p) => p.what).join('\n')).toMatch(/data space map: data block \d+ has count 0, but [12] references were found/);
  });

  // thin_check 0.9.0 does not compare mapped_blocks either (1.x does: "unexpected number of mappings").
  test('a wrong mapped_blocks: reported by us; not by thin_check 0.9.0', async () => {
    const { tc, r } = await damaged('mapped-blocks', (b, img) => {
      const leaf = img.firstLeaf(img.sb.deviceDetailsRoot, 24);
      const v = new DataView(b.buffer, b.byteOffset + leaf.blocknr * BS);
      v.setBigUint64(leaf.valueOffset(0), v.getBigUint64(leaf.valueOffset(0), true) + 1n, true);
      reseal(b, leaf.blocknr, XOR.btree);
    });
    expect(tc.status).toBe(0);
    expect(r.problems.map((p) => p.what).join('\n')).toMatch(
      /thin 1: disk_device_details.mapped_blocks \d+, but its mapping tree holds \d+/,
    );
  });
});
