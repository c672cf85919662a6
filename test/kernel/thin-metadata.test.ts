// Our metadata reader against thin-provisioning-tools on pools the kernel built: for each history,
// the thin ids, each device's details and mapped/exclusive/shared counts equal thin_ls's, and every
// mapping equals thin_dump's. Each pool is read twice: live, through a held metadata snapshot
// (thin_ls/thin_dump -m), and after the pool is removed (the kernel's last commit, block 0's roots).
// Our reader reads the metadata loop device's backing FILE (dm-bufio writes bypass the loop
// device's page cache but reach the file's); the tools read the loop device itself, with O_DIRECT
// (which the guest's tmpfs files refuse): its reads go through the loop driver to the same file.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import {
  createSnap,
  createThin,
  deleteThin,
  releaseMetadataSnap,
  reserveMetadataSnap,
  setTransactionId,
} from '../../src/dm/thin-messages.js';
import { thinId } from '../../src/dm/names.js';
import { withMetadataBlocks } from '../../src/thin/metadata/index.js';
import { LoopScratch, activateThin, dmName, kernelHooks, makePool, openDm, sweep, type TestPool } from './support/env.js';
import {
  mappingCount,
  ourThinDump,
  ourThinLs,
  parseThinDumpXml,
  parseThinLs,
  type RootChoice,
  thinDumpArgs,
  type ThinDumpXml,
  thinLsArgs,
  type ThinLsRow,
} from '../support/thin-tools.js';

kernelHooks();

const MiB = 1024 * 1024;
/** 64 KiB data blocks, the kernel's smallest: the most mappings per byte written. */
const BLOCK_SECTORS = 128;
const BLOCK_BYTES = BLOCK_SECTORS * 512;
/** Each thin device: 64 MiB = 1024 data blocks. */
const THIN_SECTORS = 131072n;
/**
 * Entries of a mapping-tree leaf: floor((4096 - 32) / (8 + 8) / 3) * 3 (dm-btree's
 * calc_max_entries). A device with more mappings, or a pool with more devices, has internal nodes.
 */
const MAPPING_LEAF_ENTRIES = 252;
/** The same for the device details tree (24-byte values). */
const DETAILS_LEAF_ENTRIES = 126;

function tool(program: string, args: string[]): string {
  const r = spawnSync(program, args, { encoding: 'utf8', maxBuffer: 256 * MiB });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Reading {
  ls: ThinLsRow[];
  dump: ThinDumpXml;
}

/** thin_ls and thin_dump of the metadata device, read through the held root or block 0's. */
function theirs(device: string, root: RootChoice): Reading {
  const held = root === 'held';
  return {
    ls: parseThinLs(tool('thin_ls', thinLsArgs(device, held))),
    dump: parseThinDumpXml(tool('thin_dump', thinDumpArgs(device, held))),
  };
}

/** Where each side reads one pool's metadata. */
interface MetadataPaths {
  /** The loop device's backing file: our reader. */
  file: string;
  /** The loop device: the tools. */
  device: string;
}

function ours(file: string, root: RootChoice): Reading {
  return withMetadataBlocks(file, (blocks) => ({ ls: ourThinLs(blocks, root), dump: ourThinDump(blocks, root) }));
}

/** Ours equals theirs, ids first (the clearest failure), then the table, then every mapping. */
function expectSame(at: MetadataPaths, root: RootChoice): Reading {
  const t = theirs(at.device, root);
  const o = ours(at.file, root);
  expect(o.ls.map((d) => d.thinId)).toEqual(t.ls.map((d) => d.thinId));
  expect(o.ls).toEqual(t.ls);
  expect(o.dump.superblock).toEqual(t.dump.superblock);
  expect(o.dump.devices.map((d) => d.thinId)).toEqual(t.dump.devices.map((d) => d.thinId));
  for (const [i, d] of t.dump.devices.entries()) {
    const mine = o.dump.devices[i]!;
    expect({ ...mine, mappings: null }, `details of thin ${d.thinId}`).toEqual({ ...d, mappings: null });
    expect(mine.mappings.virt.length, `mapping count of thin ${d.thinId}`).toBe(d.mappings.virt.length);
    expect(mine.mappings, `mappings of thin ${d.thinId}`).toEqual(d.mappings);
  }
  return t;
}

/** A pool over loop files (skip_block_zeroing: a 4 KiB write provisions a block without 60 KiB of zeros). */
class History {
  readonly scratch: LoopScratch;
  pool!: TestPool;
  private readonly metaFile: string;
  private readonly active = new Map<number, string>();

  constructor(
    readonly dm: DeviceMapper,
    readonly tag: string,
  ) {
    this.scratch = new LoopScratch(tag);
    this.metaFile = join(this.scratch.dir, `${tag}-meta.img`);
  }

  async open(opts: { dataBytes?: number; metaBytes?: number } = {}): Promise<void> {
    this.pool = await makePool(this.dm, this.scratch, this.tag, {
      dataBytes: opts.dataBytes ?? 256 * MiB,
      metaBytes: opts.metaBytes ?? 8 * MiB,
      blockSectors: BLOCK_SECTORS,
      features: ['skip_block_zeroing'],
    });
  }

  get meta(): MetadataPaths {
    return { file: this.metaFile, device: this.pool.meta.path };
  }

  private get ref() {
    return { name: this.pool.name };
  }

  create(id: number): void {
    createThin(this.dm, this.ref, thinId(id));
  }

  /** create_snap; an active origin is suspended around it (its in-flight writes land first). */
  async snapshot(id: number, origin: number): Promise<void> {
    const dev = this.active.get(origin);
    if (dev === undefined) {
      createSnap(this.dm, this.ref, thinId(id), thinId(origin));
      return;
    }
    const name = { name: dmName(`${this.tag}-t${origin}`) };
    await this.dm.suspend(name);
    try {
      createSnap(this.dm, this.ref, thinId(id), thinId(origin));
    } finally {
      await this.dm.resume(name);
    }
  }

  delete(id: number): void {
    deleteThin(this.dm, this.ref, thinId(id));
  }

  setTransaction(old: bigint, next: bigint): void {
    setTransactionId(this.dm, this.ref, old, next);
  }

  /** /dev/mapper path of thin `id`, activated on first use. */
  async device(id: number): Promise<string> {
    const known = this.active.get(id);
    if (known) return known;
    const info = await activateThin(this.dm, this.pool, `${this.tag}-t${id}`, id, THIN_SECTORS);
    const path = `/dev/mapper/${info.name}`;
    this.active.set(id, path);
    return path;
  }

  async deactivate(id: number): Promise<void> {
    if (!this.active.delete(id)) return;
    await this.dm.remove({ name: dmName(`${this.tag}-t${id}`) });
  }

  /** 4 KiB at the start of each given virtual block of thin `id`, then fsync (a flush: the pool commits). */
  async write(id: number, virtualBlocks: Iterable<number>, seed: number): Promise<void> {
    const fd = openSync(await this.device(id), 'r+');
    try {
      const buf = Buffer.alloc(4096);
      for (const b of virtualBlocks) {
        buf.fill((b * 7 + seed) & 0xff);
        writeSync(fd, buf, 0, buf.length, b * BLOCK_BYTES);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** blkdiscard (util-linux) of `count` blocks of thin `id` from block `first`. */
  async discard(id: number, first: number, count: number): Promise<void> {
    tool('blkdiscard', ['-o', String(first * BLOCK_BYTES), '-l', String(count * BLOCK_BYTES), await this.device(id)]);
  }

  /** Live: reserve_metadata_snap, ours vs the tools' -m through the held root, release (always). */
  checkLive(): Reading {
    reserveMetadataSnap(this.dm, this.ref);
    try {
      return expectSame(this.meta, 'held');
    } finally {
      releaseMetadataSnap(this.dm, this.ref);
    }
  }

  /** Removes the thins and the pool (its last commit), then ours vs the tools on block 0's roots. */
  async checkRemoved(): Promise<Reading> {
    for (const id of [...this.active.keys()]) await this.deactivate(id);
    await this.dm.remove(this.ref);
    return expectSame(this.meta, 'superblock');
  }

  async close(): Promise<void> {
    const left = await sweep({ loops: false });
    await this.scratch.cleanup();
    if (left.length > 0) throw new Error(`the sweeper could not remove ${left.join(', ')}`);
  }
}

async function history(tag: string, fn: (h: History) => Promise<void>, opts?: { dataBytes?: number; metaBytes?: number }): Promise<void> {
  const dm = openDm();
  const h = new History(dm, tag);
  try {
    await h.open(opts);
    await fn(h);
  } finally {
    try {
      await h.close();
    } finally {
      dm.close();
    }
  }
}

const range = (from: number, to: number, step = 1): number[] => {
  const r: number[] = [];
  for (let i = from; i < to; i += step) r.push(i);
  return r;
};

function row(r: Reading, id: number): ThinLsRow {
  const found = r.ls.find((d) => d.thinId === id);
  if (!found) throw new Error(`thin_ls has no thin ${id}`);
  return found;
}

describe('our metadata reader equals thin_ls and thin_dump on pools the kernel built', () => {
  test('a fresh pool: a few thins (one never written), transaction ids between them', async () => {
    await history('fresh', async (h) => {
      // Nothing yet: no devices, transaction 0.
      const empty = h.checkLive();
      expect(empty.ls).toEqual([]);
      h.create(0);
      h.setTransaction(0n, 3n);
      h.create(1);
      h.create(7);
      h.setTransaction(3n, 9n);
      await h.write(0, range(0, 10), 1);
      await h.write(7, [0, 5, 6, 7, 1000, 1023], 2);
      const live = h.checkLive();
      expect(live.ls.map((d) => d.thinId)).toEqual([0, 1, 7]);
      expect(row(live, 1).mappedBlocks).toBe(0);
      expect(row(live, 7)).toMatchObject({ mappedBlocks: 6, exclusiveBlocks: 6, sharedBlocks: 0 });
      const done = await h.checkRemoved();
      expect(done.dump.superblock.transactionId).toBe(9n);
      expect(done.ls).toEqual(live.ls);
    });
  });

  test('snapshot chains five deep with writes at each level, a second branch, origins written after', async () => {
    await history('chain', async (h) => {
      h.create(1);
      await h.write(1, range(0, 64), 1);
      // 1 -> 2 -> 3 -> 4 -> 5, each level overwriting part of what it inherited and adding blocks.
      for (let id = 2; id <= 5; id++) {
        await h.snapshot(id, id - 1);
        await h.write(id, range(id * 8, id * 8 + 12), id);
        await h.write(id, range(100 * id, 100 * id + 5), id);
        h.setTransaction(BigInt(id - 2), BigInt(id - 1));
      }
      // A snapshot of an inactive device (no suspend), and writes to origins after their snapshots.
      await h.deactivate(3);
      await h.snapshot(6, 3);
      await h.snapshot(7, 1);
      await h.write(1, range(0, 64, 4), 9);
      await h.write(6, range(30, 40), 10);
      const live = h.checkLive();
      expect(live.ls.map((d) => d.thinId)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(row(live, 5).sharedBlocks).toBeGreaterThan(0);
      expect(row(live, 5).exclusiveBlocks).toBeGreaterThan(0);
      expect(row(live, 7).mappedBlocks).toBe(64);
      expect(new Set(live.dump.devices.map((d) => d.snapshottedTime)).size).toBeGreaterThan(2);
      await h.checkRemoved();
    });
  });

  test('discards and deletes: an origin deleted under live snapshots, blkdiscard of shared and exclusive ranges', async () => {
    await history('discard', async (h) => {
      h.create(1);
      await h.write(1, range(0, 96), 1);
      await h.snapshot(2, 1);
      await h.write(2, range(80, 120), 2);
      await h.snapshot(3, 2);
      await h.snapshot(4, 1);
      await h.write(4, range(0, 8), 4);
      // The origin goes while three snapshots still map its blocks.
      await h.deactivate(1);
      h.delete(1);
      // Shared blocks discarded in one device only; exclusive ones freed; a range with a hole.
      await h.discard(2, 8, 16);
      await h.discard(3, 88, 20);
      await h.discard(4, 0, 4);
      await h.write(3, range(200, 210), 3);
      await h.discard(3, 205, 100);
      // A device written and deleted: its blocks go back to the pool.
      h.create(5);
      await h.write(5, range(0, 50), 5);
      await h.deactivate(5);
      h.delete(5);
      const live = h.checkLive();
      expect(live.ls.map((d) => d.thinId)).toEqual([2, 3, 4]);
      expect(row(live, 2).mappedBlocks).toBe(120 - 16);
      await h.checkRemoved();
    });
  });

  test(`many devices and deep trees: ${MAPPING_LEAF_ENTRIES + 48} thins, one device of 812 mappings and its snapshot`, async () => {
    await history(
      'many',
      async (h) => {
        const ids = range(0, MAPPING_LEAF_ENTRIES + 48).map((i) => i * 3 + 1);
        for (const id of ids) h.create(id);
        // A few written devices among them, then one with mappings enough for internal nodes:
        // every block of one range, every other block of another (runs and single mappings).
        for (const id of ids.slice(0, 240).filter((_, i) => i % 40 === 0)) {
          await h.write(id, range(0, 3), id);
          await h.deactivate(id);
        }
        const big = ids[ids.length - 1]!;
        await h.write(big, range(0, 600), 1);
        await h.write(
          big,
          range(601, 1201, 2).filter((b) => b < 1024),
          2,
        );
        await h.snapshot(100000, big);
        await h.write(big, range(0, 600, 37), 3);
        const live = h.checkLive();
        expect(live.ls).toHaveLength(ids.length + 1);
        expect(live.ls.length).toBeGreaterThan(MAPPING_LEAF_ENTRIES);
        expect(live.ls.length).toBeGreaterThan(DETAILS_LEAF_ENTRIES);
        const bigDump = live.dump.devices.find((d) => d.thinId === big)!;
        expect(bigDump.mappings.virt.length).toBe(600 + 212);
        expect(row(live, 100000).sharedBlocks).toBeGreaterThan(row(live, 100000).exclusiveBlocks);
        const done = await h.checkRemoved();
        expect(mappingCount(done.dump)).toBe(mappingCount(live.dump));
      },
      { metaBytes: 16 * MiB },
    );
  });

  test('a live pool read through a held metadata snapshot while writes go on: the held view stays frozen', async () => {
    await history('held', async (h) => {
      h.create(1);
      h.create(2);
      await h.write(1, range(0, 100), 1);
      await h.snapshot(3, 1);
      const writer = await h.device(2);
      reserveMetadataSnap(h.dm, { name: h.pool.name });
      let first: Reading;
      try {
        first = ours(h.meta.file, 'held');
        // A writer in another process (dd, O_DIRECT) while the tools and our reader read the held root,
        // and our own writes with flushes in between (each one a commit of the live roots).
        const dd = spawn('dd', ['if=/dev/zero', `of=${writer}`, `bs=${BLOCK_BYTES}`, 'count=400', 'oflag=direct', 'status=none'], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let ddErr = '';
        dd.stderr.on('data', (c: Buffer) => {
          ddErr += c.toString();
        });
        const ddDone = new Promise<number | null>((resolve, reject) => {
          dd.on('error', reject);
          dd.on('close', resolve);
        });
        await h.write(1, range(100, 200), 2);
        await h.write(3, range(0, 50), 3);
        const during = expectSame(h.meta, 'held');
        await h.write(1, range(300, 400), 4);
        expect(ours(h.meta.file, 'held')).toEqual(first);
        expect(during.ls).toEqual(first.ls);
        expect(await ddDone, ddErr).toBe(0);
        // The held root after all of it: still the view at reserve time.
        expect(expectSame(h.meta, 'held').ls).toEqual(first.ls);
      } finally {
        releaseMetadataSnap(h.dm, { name: h.pool.name });
      }
      expect(row(first, 1).mappedBlocks).toBe(100);
      expect(row(first, 2).mappedBlocks).toBe(0);
      const done = await h.checkRemoved();
      expect(row(done, 1).mappedBlocks).toBe(300);
      expect(row(done, 2).mappedBlocks).toBe(400);
      expect(row(done, 3)).toMatchObject({ mappedBlocks: 100, exclusiveBlocks: 50 });
    });
  });

  test('a held metadata snapshot kept across the removal of the pool: both roots readable from the file', async () => {
    await history('kept', async (h) => {
      h.create(1);
      await h.write(1, range(0, 40), 1);
      await h.snapshot(2, 1);
      reserveMetadataSnap(h.dm, { name: h.pool.name });
      await h.write(1, range(20, 80), 2);
      h.create(3);
      await h.write(3, range(0, 5), 3);
      for (const id of [1, 2, 3]) await h.deactivate(id);
      await h.dm.remove({ name: h.pool.name });
      const held = expectSame(h.meta, 'held');
      const live = expectSame(h.meta, 'superblock');
      expect(held.ls.map((d) => d.thinId)).toEqual([1, 2]);
      expect(live.ls.map((d) => d.thinId)).toEqual([1, 2, 3]);
      expect(row(held, 1).mappedBlocks).toBe(40);
      expect(row(live, 1).mappedBlocks).toBe(80);
    });
  });
});
