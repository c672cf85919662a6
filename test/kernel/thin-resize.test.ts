// Growing a pool in a real kernel: data and metadata on loop files, on block devices that grew (a
// loop device over a file grown with `losetup -c`, a linear dm device reloaded bigger), a failure
// between suspend and resume, refusals that change nothing, and a resize from the kernel's view
// alone (another DeviceMapper, another process) beside a DeviceSet holding the home. dmsetup and
// losetup/blockdev are the oracles.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { FaultInjectingTransport } from '../../src/ioctl/fault.js';
import { libcTransport } from '../../src/ioctl/libc.js';
import { attachLoop, detachLoop, listLoops, type LoopDevice } from '../../src/loop/index.js';
import { DmCmd, dmRequest } from '../../src/structs/dm-ioctl.js';
import { bytes } from '../../src/structs/units.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { OptionError } from '../../src/thin/errors.js';
import { mountTable } from '../../src/thin/mount.js';
import { resizePoolByName, THIN_METADATA_MAX_BYTES } from '../../src/thin/resize.js';
import { resizeLockPath, withResizeLock } from '../../src/thin/resize-lock.js';
import { linearOver } from './support/env.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const CHILD = join(import.meta.dirname, 'thin-resize-child.ts');

const MiB = 1n << 20n;
const BLOCK = 64n * 1024n; // SMALL's dm.blocksize default
const META_BLOCK = 4096n;

const homes: string[] = [];
const loops: LoopDevice[] = [];
function home(tag: string): string {
  const h = newHome(tag);
  homes.push(h);
  return h;
}
afterEach(async () => {
  for (const h of homes.splice(0)) {
    for (const m of mountTable()
      .filter((e) => e.mountPoint.startsWith(`${h}/`))
      .reverse())
      execFileSync('umount', ['-l', m.mountPoint]);
  }
  await sweep();
  for (const l of loops.splice(0)) await detachLoop(l).catch(() => undefined);
  for (const h of homes.splice(0)) {
    for (const l of listLoops().filter((l) => l.backingFile.startsWith(`${h}/`))) execFileSync('losetup', ['-d', l.path]);
    rmSync(h, { recursive: true, force: true });
  }
});

/** The pool as dmsetup sees it: table length, status totals (data in pool blocks, metadata in 4 KiB), state. */
function oracle(name: string) {
  const table = dmsetup('table', name).split(' ');
  const status = dmsetup('status', name).split(' ');
  const [, metaTotal] = status[4]!.split('/');
  const [, dataTotal] = status[5]!.split('/');
  const info = dmsetup('info', name);
  return {
    tableBytes: BigInt(table[1]!) * 512n,
    dataBytes: BigInt(dataTotal!) * BLOCK,
    metadataBytes: BigInt(metaTotal!) * META_BLOCK,
    state: /State:\s+(\S+)/.exec(info)?.[1] ?? '',
    inactive: /Tables present:.*INACTIVE/.test(info),
  };
}
const sizeOf = (f: string): bigint => statSync(f, { bigint: true }).size;
const blockdevSize = (dev: string): bigint => BigInt(execFileSync('blockdev', ['--getsize64', dev], { encoding: 'utf8' }).trim());
const loopOf = (file: string): string => {
  const l = listLoops().find((x) => x.backingFile === file);
  if (!l) throw new Error(`no loop device for ${file}`);
  return l.path;
};
const caught = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe('a pool on loop files', () => {
  test('refusals change nothing; data and metadata grow together, alone, and to files another tool grew', async () => {
    const h = home('rs-loop');
    const set = await DeviceSet.open(h, SMALL);
    const files = { data: join(h, 'devicemapper', 'data'), metadata: join(h, 'devicemapper', 'metadata') };
    const before = oracle(set.poolName);
    expect(before).toEqual({ tableBytes: 256n * MiB, dataBytes: 256n * MiB, metadataBytes: 16n * MiB, state: 'ACTIVE', inactive: false });

    const refused: [Parameters<DeviceSet['resizePool']>[0], RegExp][] = [
      [{ dataBytes: bytes(128n * MiB) }, /can only grow, never shrink/],
      [{ metadataBytes: bytes(8n * MiB) }, /can only grow, never shrink/],
      [{ dataBytes: bytes(256n * MiB) }, /nothing to grow/],
      [{ dataBytes: bytes(256n * MiB), metadataBytes: bytes(16n * MiB) }, /nothing to grow/],
      [{}, /nothing to grow: its devices hold no more/],
      [{ dataBytes: bytes(300n * MiB + 4096n) }, /multiple of the block size 65536/],
      [{ metadataBytes: bytes(32n * MiB + 512n) }, /multiple of the metadata block size/],
      [{ metadataBytes: bytes(THIN_METADATA_MAX_BYTES + META_BLOCK) }, /dm-thin uses at most 17045913600 bytes/],
    ];
    for (const [target, why] of refused) {
      const err = await caught(set.resizePool(target));
      expect(
        err,
        JSON.stringify(target, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      ).toBeInstanceOf(OptionError);
      expect((err as Error).message).toMatch(why);
      expect(oracle(set.poolName)).toEqual(before);
      expect([sizeOf(files.data), sizeOf(files.metadata)]).toEqual([256n * MiB, 16n * MiB]);
    }

    await set.resizePool({ dataBytes: bytes(320n * MiB), metadataBytes: bytes(24n * MiB) });
    expect(oracle(set.poolName)).toEqual({
      tableBytes: 320n * MiB,
      dataBytes: 320n * MiB,
      metadataBytes: 24n * MiB,
      state: 'ACTIVE',
      inactive: false,
    });
    expect([sizeOf(files.data), sizeOf(files.metadata)]).toEqual([320n * MiB, 24n * MiB]);
    expect([blockdevSize(loopOf(files.data)), blockdevSize(loopOf(files.metadata))]).toEqual([320n * MiB, 24n * MiB]);
    expect(set.status()).toMatchObject({ data: { totalBytes: 320n * MiB }, metadata: { totalBytes: 24n * MiB } });

    await set.resizePool({ metadataBytes: bytes(32n * MiB) });
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 320n * MiB, metadataBytes: 32n * MiB, state: 'ACTIVE', inactive: false });
    await set.resizePool(bytes(384n * MiB)); // a plain Bytes is the data size
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 384n * MiB, metadataBytes: 32n * MiB });
    // Files another tool grew: {} takes what they hold.
    truncateSync(files.data, Number(448n * MiB));
    truncateSync(files.metadata, Number(40n * MiB));
    await set.resizePool({});
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 448n * MiB, metadataBytes: 40n * MiB, state: 'ACTIVE', inactive: false });

    // The pool works on the grown sizes; a reopen with the options it was made with (smaller loop
    // sizes) agrees, and so does the pool made again from the files after a shutdown.
    await set.addDevice('after', '');
    await set.close();
    const again = await DeviceSet.open(h, SMALL);
    expect(again.status()).toMatchObject({ data: { totalBytes: 448n * MiB }, metadata: { totalBytes: 40n * MiB } });
    expect(again.hasDevice('after')).toBe(true);
    await again.shutdown();
    const fromFiles = await DeviceSet.open(h, SMALL);
    expect(oracle(fromFiles.poolName)).toMatchObject({ dataBytes: 448n * MiB, metadataBytes: 40n * MiB });
    await fromFiles.shutdown();
  });
});

describe('a failure between suspend and resume', () => {
  const SUSPEND = dmRequest(DmCmd.DM_DEV_SUSPEND);

  test('the resume fails (EIO), or a step stops: the pool is active, nothing inactive, the old data size', async () => {
    const h = home('rs-fail');
    const t = new FaultInjectingTransport(libcTransport);
    const dm = DeviceMapper.open({ transport: t });
    const seen: string[] = [];
    let stopAt = '';
    const set = await DeviceSet.open(h, SMALL, {
      dm,
      hook: (p) => {
        seen.push(p);
        if (p === stopAt) throw new Error(`stopped at ${p}`);
      },
    });
    const before = oracle(set.poolName);
    // DM_DEV_SUSPEND is both suspend and resume: the second of the resize is its resume.
    let n = 0;
    t.beforeCall = (call) => {
      if (call.request === SUSPEND && ++n === 2) t.failNext({ nth: call.index }, osConstants.errno.EIO);
    };
    const err = await caught(set.resizePool({ dataBytes: bytes(320n * MiB), metadataBytes: bytes(20n * MiB) }));
    t.beforeCall = undefined;
    expect(err).toMatchObject({ code: 'EIO' });
    expect(t.pendingFaults()).toBe(0);
    // dm-thin takes a metadata device's size at every resume, the old table's too: the metadata
    // (its loop device grown) is grown, the data is not.
    expect(oracle(set.poolName)).toEqual({ ...before, metadataBytes: 20n * MiB });
    await set.addDevice('io-goes-through', '');

    const points = [
      'resize:file-grown',
      'resize:loop-capacity',
      'resize:metadata-file-grown',
      'resize:metadata-loop-capacity',
      'resize:table-loaded',
      'resize:suspended',
    ];
    let dataTo = 320n * MiB;
    let metaTo = 20n * MiB;
    for (const point of points) {
      const was = oracle(set.poolName);
      seen.length = 0;
      stopAt = point;
      dataTo += 64n * MiB;
      metaTo += 4n * MiB;
      const stopped = await caught(set.resizePool({ dataBytes: bytes(dataTo), metadataBytes: bytes(metaTo) }));
      expect((stopped as Error | undefined)?.message).toBe(`stopped at ${point}`);
      expect(seen.filter((p) => p.startsWith('resize:'))).toEqual(points.slice(0, points.indexOf(point) + 1));
      // Only the restoring resume (after the suspend) lets the kernel see the grown metadata device.
      expect(oracle(set.poolName)).toEqual(point === 'resize:suspended' ? { ...was, metadataBytes: metaTo } : was);
    }
    stopAt = '';
    // The files are grown already; the same resize is run again and completes.
    await set.resizePool({ dataBytes: bytes(dataTo), metadataBytes: bytes(metaTo) });
    expect(oracle(set.poolName)).toEqual({
      tableBytes: dataTo,
      dataBytes: dataTo,
      metadataBytes: metaTo,
      state: 'ACTIVE',
      inactive: false,
    });
    await set.shutdown();
    dm.close();
  });
});

describe('a pool on block devices that grew', () => {
  /** A file of `size` bytes under `h` on a loop device of ours. */
  async function loopFile(h: string, name: string, size: bigint): Promise<{ file: string; loop: LoopDevice }> {
    const file = join(h, name);
    writeFileSync(file, '');
    truncateSync(file, Number(size));
    const loop = await attachLoop(file);
    loops.push(loop);
    return { file, loop };
  }

  test('data on a linear dm device reloaded bigger, metadata on a loop grown with losetup -c: {} takes both', async () => {
    const h = home('rs-blk');
    const under = await loopFile(h, 'under', 512n * MiB);
    const meta = await loopFile(h, 'meta', 16n * MiB);
    const dm = DeviceMapper.open();
    const linearName = deviceName(`dmtest-rs-linear-${process.pid}`);
    await dm.create(linearName, { table: linearOver(under.loop, (256n * MiB) / 512n) });
    const opts = [
      'dm.basesize=64M',
      'dm.prefix=dmtest',
      'dm.min_free_space=0%',
      `dm.datadev=/dev/mapper/${linearName}`,
      `dm.metadatadev=${meta.loop.path}`,
    ];
    const set = await DeviceSet.open(join(h, 'home'), opts);
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 256n * MiB, metadataBytes: 16n * MiB });

    // Not grown yet: a size past the device is refused, nothing changed.
    const early = await caught(set.resizePool({ dataBytes: bytes(384n * MiB) }));
    expect((early as Error).message).toMatch(/holds 268435456 bytes: grow the device first/);
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 256n * MiB, state: 'ACTIVE', inactive: false });

    // The devices grow (as an LV or a SAN volume would), then the pool.
    dm.loadTable({ name: linearName }, linearOver(under.loop, (384n * MiB) / 512n));
    await dm.suspend({ name: linearName });
    await dm.resume({ name: linearName });
    truncateSync(meta.file, Number(40n * MiB));
    execFileSync('losetup', ['-c', meta.loop.path]);
    expect(blockdevSize(meta.loop.path)).toBe(40n * MiB);
    await set.resizePool({});
    expect(oracle(set.poolName)).toEqual({
      tableBytes: 384n * MiB,
      dataBytes: 384n * MiB,
      metadataBytes: 40n * MiB,
      state: 'ACTIVE',
      inactive: false,
    });
    // A block device is never grown by us: its file stays as the test made it.
    expect(sizeOf(under.file)).toBe(512n * MiB);
    await set.addDevice('on-grown', '');
    await set.shutdown();
    await dm.remove({ name: linearName });
    dm.close();
  });
});

describe('from the kernel view alone, beside a DeviceSet holding the home', () => {
  test('another DeviceMapper, then another process waiting for the resize lock, grow the pool by name', async () => {
    const h = home('rs-byname');
    const set = await DeviceSet.open(h, SMALL);
    const other = DeviceMapper.open();
    await resizePoolByName(other, set.poolName, { dataBytes: bytes(320n * MiB), metadataBytes: bytes(20n * MiB) });
    other.close();
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 320n * MiB, metadataBytes: 20n * MiB, state: 'ACTIVE', inactive: false });
    expect(sizeOf(join(h, 'devicemapper', 'data'))).toBe(320n * MiB);
    expect(set.status()).toMatchObject({ data: { totalBytes: 320n * MiB }, metadata: { totalBytes: 20n * MiB } });

    let out = '';
    let exited: Promise<number | null> | undefined;
    await withResizeLock(set.poolName, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, set.poolName, String(384n * MiB), String(24n * MiB)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      exited = new Promise((r) => child.on('exit', r));
      // Held by us: the child waits (its start-up included), the pool keeps its size.
      await new Promise((r) => setTimeout(r, 5000));
      expect(out).toBe('');
      expect(oracle(set.poolName)).toMatchObject({ dataBytes: 320n * MiB, metadataBytes: 20n * MiB });
      expect(readFileSync(resizeLockPath(set.poolName), 'utf8')).toBe(`${process.pid}\n`);
    });
    expect(await exited).toBe(0);
    expect(out).toBe('grown\n');
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 384n * MiB, metadataBytes: 24n * MiB, state: 'ACTIVE', inactive: false });
    // The DeviceSet goes on from there: its own resize and a new device.
    await set.resizePool({ dataBytes: bytes(448n * MiB) });
    expect(oracle(set.poolName)).toMatchObject({ dataBytes: 448n * MiB, metadataBytes: 24n * MiB });
    await set.addDevice('after', '');
    await set.shutdown();
  }, 120_000);
});
