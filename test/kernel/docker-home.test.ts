// A home made by Docker's devmapper driver, built from its format (never by Docker): sparse loop
// files, a thin-pool made with our dm API under Docker's name `docker-<maj>:<min>-<inode>-pool`
// with Docker's table, the base (ext4, a file on it), a layer snapshot (a file of its own), and
// Docker's metadata files written by field name. DeviceSet.open and the CLI adopt the pool and its
// layers and mount them; Docker's open transaction is rolled back, its deferred-deleted device
// deleted, its files kept in metadata.docker/.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { thinId, type DeviceName } from '../../src/dm/names.js';
import { createSnap, createThin, setTransactionId } from '../../src/dm/thin-messages.js';
import { attachLoop, releaseLoop } from '../../src/loop/index.js';
import { formatDev } from '../../src/structs/dev.js';
import { bytes, bytesToSectors, sectors } from '../../src/structs/units.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { detachLoopsOf, removeByStem, unmountByStem } from '../../src/thin/home-teardown.js';
import { mount, unmount } from '../../src/thin/mount.js';
import { PoolNaming } from '../../src/thin/naming.js';
import { poolTable } from '../../src/thin/pool-setup.js';
import { cliOk as cliRun, dmsetupOk } from './support/env.js';
import { newHome, requireKernelTier, thinDevicesOf } from './thin-support.js';
import {
  dockerDevInfo,
  filesUnder,
  writeDockerDevice,
  writeDockerDeviceSet,
  writeDockerLegacy,
  writeDockerTransaction,
} from '../unit/thin-docker-files.js';

requireKernelTier();

const M = 2 ** 20;
const DATA = 256 * M;
const BASE = 64 * M;
const L1 = 'c3'.repeat(32);
const L2 = 'd4'.repeat(32);
const GONE = `${'e5'.repeat(32)}-init`;

/** A Docker home under construction: its loop files, its pool (active), its names. */
interface Built {
  home: string;
  naming: PoolNaming;
  pool: DeviceName;
}

let dm: DeviceMapper;
const homes: Built[] = [];

/** Docker's ensureImage + AttachLoopDevice + CreatePool: sparse files, loops, a pool with its table. */
async function dockerPool(home: string): Promise<Built> {
  const root = join(home, 'devicemapper');
  mkdirSync(root, { mode: 0o700 });
  const files = [join(root, 'data'), join(root, 'metadata')];
  for (const [f, size] of [
    [files[0]!, DATA],
    [files[1]!, 16 * M],
  ] as const) {
    const fd = openSync(f, 'wx', 0o600);
    execFileSync('truncate', ['-s', String(size), f]);
    closeSync(fd);
  }
  const naming = PoolNaming.forHome(home, 'docker');
  const built = { home, naming, pool: naming.poolName() };
  homes.push(built);
  const data = await attachLoop(files[0]!, { autoclear: true });
  const meta = await attachLoop(files[1]!, { autoclear: true });
  try {
    // Docker's table: "<meta> <data> 128 32768 1 skip_block_zeroing" (low water mark capped for a small pool).
    const table = { ...poolTable(formatDev(meta), formatDev(data), bytes(DATA), bytes(64 * 1024)), features: ['skip_block_zeroing'] };
    await dm.create(built.pool, { table: [table] });
  } finally {
    releaseLoop(data);
    releaseLoop(meta);
  }
  return built;
}

/** Activate thin id `id` as Docker's device of `hash`, run `fn` on it mounted, take it down again. */
async function onThin(b: Built, hash: string, id: number, fn: (dir: string, dev: string) => void): Promise<void> {
  const name = b.naming.deviceName(hash);
  const poolDev = formatDev(dm.info({ name: b.pool })!.dev);
  const lengthSectors = bytesToSectors(bytes(BASE));
  await dm.create(name, { table: [{ type: 'thin', startSector: sectors(0), lengthSectors, poolDevice: poolDev, thinId: thinId(id) }] });
  const dev = join(dm.mapperDir, name);
  const dir = join(b.home, 'build', hash || 'base');
  mkdirSync(dir, { recursive: true });
  try {
    fn(dir, dev);
  } finally {
    await dm.remove({ name }, { retry: true });
  }
}

function withMount(dev: string, dir: string, fn: () => void): void {
  mount(dev, dir, 'ext4', []);
  try {
    fn();
  } finally {
    unmount(dir);
  }
}

/** Docker's createBaseImage: create_thin, set_transaction_id, mkfs.ext4 as Docker runs it, a file. */
async function dockerBase(b: Built, id: number, txid: bigint): Promise<void> {
  const ref = { name: b.pool };
  createThin(dm, ref, thinId(id));
  setTransactionId(dm, ref, txid - 1n, txid);
  await onThin(b, '', id, (dir, dev) => {
    execFileSync('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', dev]);
    withMount(dev, dir, () => writeFileSync(join(dir, 'from-base'), 'the base\n'));
  });
}

/** Docker's createRegisterSnapDevice (+ closeTransaction unless `open`): create_snap, set_transaction_id. */
async function dockerSnap(b: Built, id: number, origin: number, txid: bigint, open = false): Promise<void> {
  const ref = { name: b.pool };
  createSnap(dm, ref, thinId(id), thinId(origin));
  if (!open) setTransactionId(dm, ref, txid - 1n, txid);
}

async function takeDown(b: Built): Promise<void> {
  await unmountByStem(dm, b.naming, []);
  await removeByStem(dm, b.naming, []);
  await detachLoopsOf([join(b.home, 'devicemapper', 'data'), join(b.home, 'devicemapper', 'metadata')]);
}

/** The CLI, its time on stderr (each command is a process of its own, slow in a busy guest). */
function cliOk(args: readonly string[]): string {
  const t0 = Date.now();
  try {
    return cliRun(args);
  } finally {
    process.stderr.write(`devmapper ${args.slice(0, 2).join(' ')}: ${Date.now() - t0} ms\n`);
  }
}

const txOf = (pool: string): bigint => BigInt(dmsetupOk(['status', pool]).split(' ')[3]!);
const skipLoops = (rel: string): boolean => rel === 'devicemapper/data' || rel === 'devicemapper/metadata' || rel === 'lock';

beforeAll(() => {
  dm = DeviceMapper.open({ udev: 'off' });
});
afterAll(async () => {
  for (const b of homes) {
    await takeDown(b).catch(() => undefined);
    rmSync(b.home, { recursive: true, force: true });
  }
  dm?.close();
});

describe("a home made by Docker's devmapper driver", () => {
  test('per-device files, an open transaction, a deferred-deleted device; the pool down (dockerd stopped)', async () => {
    const b = await dockerPool(newHome('docker'));
    // txid 1: the base (id 1: Docker increments next_device_id before use); 2: layer L1 of it;
    // 3: GONE, whose delete found it busy (deferred deletion: record deleted, id still in the pool);
    // then L2 (id 5) was being made when dockerd died: created in the pool, txid never moved to 4.
    await dockerBase(b, 1, 1n);
    await dockerSnap(b, 2, 1, 2n);
    await onThin(b, L1, 2, (dir, dev) =>
      withMount(dev, dir, () => {
        expect(readFileSync(join(dir, 'from-base'), 'utf8')).toBe('the base\n');
        writeFileSync(join(dir, 'from-layer'), 'layer one\n');
      }),
    );
    await dockerSnap(b, 4, 1, 3n);
    await dockerSnap(b, 5, 2, 4n, true);
    writeDockerDevice(b.home, '', dockerDevInfo(1, BASE, 1, true));
    writeDockerDevice(b.home, L1, dockerDevInfo(2, BASE, 2, false));
    writeDockerDevice(b.home, GONE, dockerDevInfo(4, BASE, 3, false, true));
    writeDockerDevice(b.home, L2, dockerDevInfo(5, BASE, 4, false));
    writeDockerTransaction(b.home, 4, L2, 5);
    writeDockerDeviceSet(b.home, 5, '4f1d1f3e-0c47-4d5e-9b0a-3a3c1f2e6d7b', 'ext4');
    expect(thinDevicesOf(b.pool, dm).devices.map((d) => d.thinId)).toEqual([1, 2, 4, 5]);
    // Docker's Shutdown: every device and the pool removed (the loops go with it).
    await takeDown(b);
    expect(dm.info({ name: b.pool })).toBeNull();
    const docker = filesUnder(join(b.home, 'metadata'));

    const set = await DeviceSet.open(b.home, []);
    try {
      expect(set.poolName).toBe(b.pool);
      expect(set.poolName).toMatch(/^docker-\d+:\d+-\d+-pool$/);
      expect(set.dockerAdoption).toMatchObject({
        backup: join(b.home, 'metadata.docker'),
        legacyJson: false,
        devices: 3,
        transactionId: 3n,
        transaction: { openTransactionId: 4n, deviceHash: L2, deviceId: 5, action: 'rolled-back' },
      });
      expect(filesUnder(join(b.home, 'metadata.docker'))).toEqual(docker);
      // L2's id deleted (the rollback), GONE's deleted (its deferred deletion retried on open).
      expect(thinDevicesOf(b.pool, dm).devices.map((d) => d.thinId)).toEqual([1, 2]);
      expect(set.list()).toEqual([L1]);
      expect(set.transactionId).toBe(4n);
      expect(txOf(b.pool)).toBe(4n);
      expect(set.reconciled.unknownThinIds).toEqual([]);
      expect(dmsetupOk(['table', b.pool]).trim()).toMatch(/ thin-pool \d+:\d+ \d+:\d+ 128 \d+ 2 skip_block_zeroing error_if_no_space$/);

      const mnt = join(b.home, 'mnt', L1);
      await set.mountDevice(L1, mnt, '', { createMountPoint: true });
      expect(readFileSync(join(mnt, 'from-base'), 'utf8')).toBe('the base\n');
      expect(readFileSync(join(mnt, 'from-layer'), 'utf8')).toBe('layer one\n');
      expect(dmsetupOk(['table', b.naming.deviceName(L1)]).trim()).toMatch(/^0 131072 thin \d+:\d+ 2$/);
      await set.unmountDevice(L1);

      // A new layer on the adopted one: the next id after Docker's next_device_id (5).
      await set.addDevice('L3', L1);
      expect(set.deviceRecords().find((r) => r.hash === 'L3')?.deviceId).toBe(6);
      await set.mountDevice('L3', join(b.home, 'mnt', 'L3'), '', { createMountPoint: true });
      expect(readFileSync(join(b.home, 'mnt', 'L3', 'from-layer'), 'utf8')).toBe('layer one\n');
      await set.unmountDevice('L3');
    } finally {
      await set.shutdown();
    }
    expect(dm.info({ name: b.pool })).toBeNull();

    // Reopened: ours now (no adoption), still under Docker's names.
    const again = await DeviceSet.open(b.home, []);
    try {
      expect(again.dockerAdoption).toBeNull();
      expect(again.poolName).toBe(b.pool);
      expect(again.list().sort()).toEqual(['L3', L1].sort());
      expect(again.transactionId).toBe(5n);
    } finally {
      await again.shutdown();
    }
  });

  test("the legacy devicemapper/json and Docker's pool still active, through the CLI", async () => {
    const b = await dockerPool(newHome('docker-legacy'));
    // The oldest drivers: ids from 0, no deleted field, no metadata folder at all.
    await dockerBase(b, 0, 1n);
    await dockerSnap(b, 1, 0, 2n);
    await onThin(b, L1, 1, (dir, dev) => withMount(dev, dir, () => writeFileSync(join(dir, 'from-layer'), 'old layer\n')));
    writeDockerLegacy(b.home, {
      '': { device_id: 0, size: BASE, transaction_id: 1, initialized: true },
      [L1]: { device_id: 1, size: BASE, transaction_id: 2, initialized: false },
    });
    const json = readFileSync(join(b.home, 'devicemapper', 'json'), 'utf8');
    expect(existsSync(join(b.home, 'metadata'))).toBe(false);
    expect(dm.info({ name: b.pool })).not.toBeNull(); // dockerd was killed: its pool stays up
    const before = filesUnder(b.home, skipLoops);

    const home = ['--home', b.home];
    cliOk(['pool', 'init', ...home]);
    expect(readFileSync(join(b.home, 'devicemapper', 'json.migrated'), 'utf8')).toBe(json);
    expect(existsSync(join(b.home, 'devicemapper', 'json'))).toBe(false);
    expect(existsSync(join(b.home, 'metadata.docker'))).toBe(true);
    const status = JSON.parse(cliOk(['pool', 'status', '--json', ...home])) as { poolName: string; transactionId: string };
    expect(status).toMatchObject({ poolName: b.pool, transactionId: '2' });
    const layers = JSON.parse(cliOk(['layer', 'ls', '--json', ...home])) as { id: string; thinId: number }[];
    expect(layers.map((l) => [l.id, l.thinId])).toEqual([[L1, 1]]);
    const mnt = cliOk(['layer', 'mount', L1, ...home]).trim();
    expect(readFileSync(join(mnt, 'from-layer'), 'utf8')).toBe('old layer\n');
    cliOk(['layer', 'umount', L1, ...home]);
    expect(existsSync(join(mnt, 'from-layer'))).toBe(false);
    cliOk(['pool', 'shutdown', ...home]);
    expect(dm.info({ name: b.pool })).toBeNull();
    // Docker's files as they were, in the backup (its legacy file renamed, as its own migration does).
    const after = filesUnder(
      b.home,
      (rel) => skipLoops(rel) || rel.startsWith('metadata/') || rel === 'storage-opts' || rel.startsWith('mnt'),
    );
    expect(after).toEqual({ ...before, 'devicemapper/json.migrated': json, 'devicemapper/json': undefined });
    // Each CLI command is a process of its own: slow in the guest on a busy host.
  }, 600_000);
});
