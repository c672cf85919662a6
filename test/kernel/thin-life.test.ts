// The whole life of a pool on loop files, in a real kernel: base on ext4, three generations of
// snapshots with copy-on-write checked by files, mapped sectors growing and freed, shutdown and
// reopen, and dmsetup (an independent oracle) agreeing with our status and tables.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { requireKernelTier, dmsetup, newHome, SMALL, sweep, thinIdsOf } from './thin-support.js';
import { bytes } from '../../src/structs/units.js';

requireKernelTier();

describe('thin pool life', () => {
  let home: string;
  let dm: DeviceMapper;
  let set: DeviceSet;
  const mnt = (n: string) => {
    const p = join(home, 'm', n);
    mkdirSync(p, { recursive: true });
    return p;
  };

  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
    home = newHome('life');
    set = await DeviceSet.open(home, SMALL);
  });
  afterAll(async () => {
    await set?.shutdown().catch(() => undefined);
    await sweep();
    dm.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('a new pool: base device, names from the home folder, loop files sparse', async () => {
    expect(set.poolName).toMatch(/^dmtest-\d+:\d+-\d+-pool$/);
    expect(dmsetup('table', set.poolName)).toMatch(/^0 524288 thin-pool \d+:\d+ \d+:\d+ 128 \d+ 2 skip_block_zeroing error_if_no_space$/);
    expect(set.deviceRecords().map((d) => [d.hash, d.deviceId, d.initialized])).toEqual([['', 0, true]]);
    expect(set.transactionId).toBe(1n);
    const st = set.status();
    expect(st.dataFile).toBe(join(home, 'devicemapper', 'data'));
    expect(st.data.totalBytes).toBe(256n * 2n ** 20n);
    expect(st.metadata.totalBytes).toBe(16n * 2n ** 20n);
    expect(st.sectorSizeBytes).toBe(65536n);
    // dmsetup status: <txid> <used meta>/<total meta> <used data>/<total data> ...
    const words = dmsetup('status', set.poolName).split(' ');
    expect(words[3]).toBe('1');
    expect(words[4]).toBe(`${st.metadata.usedBytes / 4096n}/${st.metadata.totalBytes / 4096n}`);
    expect(words[5]).toBe(`${st.data.usedBytes / 65536n}/${st.data.totalBytes / 65536n}`);
  });

  test('three generations of snapshots, copy-on-write seen by files', async () => {
    await set.addDevice('g1', '');
    await set.mountDevice('g1', mnt('g1'));
    writeFileSync(join(home, 'm/g1/one'), 'gen1');
    await set.unmountDevice('g1');
    await set.addDevice('g2', 'g1');
    await set.mountDevice('g2', mnt('g2'));
    expect(readFileSync(join(home, 'm/g2/one'), 'utf8')).toBe('gen1');
    writeFileSync(join(home, 'm/g2/two'), 'gen2');
    writeFileSync(join(home, 'm/g2/one'), 'changed in gen2');
    await set.unmountDevice('g2');
    await set.addDevice('g3', 'g2');
    await set.addDevice('g2b', 'g1');
    for (const h of ['g1', 'g2', 'g3', 'g2b']) await set.mountDevice(h, mnt(h));
    expect(readFileSync(join(home, 'm/g1/one'), 'utf8')).toBe('gen1');
    expect(existsSync(join(home, 'm/g1/two'))).toBe(false);
    expect(readFileSync(join(home, 'm/g3/one'), 'utf8')).toBe('changed in gen2');
    expect(readFileSync(join(home, 'm/g3/two'), 'utf8')).toBe('gen2');
    expect(existsSync(join(home, 'm/g2b/two'))).toBe(false);
    writeFileSync(join(home, 'm/g3/three'), 'gen3');
    expect(existsSync(join(home, 'm/g2/three'))).toBe(false);
    for (const h of ['g1', 'g2', 'g3', 'g2b']) await set.unmountDevice(h);
    expect(set.list().sort()).toEqual(['g1', 'g2', 'g2b', 'g3']);
    expect(set.hasActivatedDevice('g1')).toBe(false);
  });

  test('snapshot of an active (mounted) origin: suspended and resumed around create_snap', async () => {
    await set.mountDevice('g3', mnt('g3'));
    await set.addDevice('g4', 'g3');
    expect(dm.info({ name: set.naming.deviceName('g3') })?.suspended).toBe(false);
    writeFileSync(join(home, 'm/g3/after'), 'x');
    await set.unmountDevice('g3');
    await set.mountDevice('g4', mnt('g4'));
    expect(readFileSync(join(home, 'm/g4/three'), 'utf8')).toBe('gen3');
    expect(existsSync(join(home, 'm/g4/after'))).toBe(false);
    await set.unmountDevice('g4');
  });

  test('mapped sectors grow as data is written, and delete frees them', async () => {
    await set.addDevice('big', '');
    const before = await set.getDeviceStatus('big');
    const poolBefore = set.status().data.usedBytes;
    await set.mountDevice('big', mnt('big'));
    writeFileSync(join(home, 'm/big/blob'), Buffer.alloc(8 << 20, 7));
    await set.unmountDevice('big');
    const after = await set.getDeviceStatus('big');
    expect(after.mappedSectors - before.mappedSectors).toBeGreaterThanOrEqual(BigInt((8 << 20) / 512));
    expect(after.highestMappedSector).not.toBeNull();
    expect(set.status().data.usedBytes - poolBefore).toBeGreaterThanOrEqual(8n << 20n);
    // dmsetup agrees on the thin device's mapped sectors
    await set.activateDevice('big');
    const thinStatus = dmsetup('status', set.naming.deviceName('big')).split(' ');
    expect(thinStatus[3]).toBe(String(after.mappedSectors));
    expect(dmsetup('table', set.naming.deviceName('big'))).toBe(
      `0 131072 thin ${dm.info({ name: set.poolName })!.dev.major}:${dm.info({ name: set.poolName })!.dev.minor} ${after.deviceId}`,
    );
    await set.deactivateDevice('big');
    const usedWithBig = set.status().data.usedBytes;
    await set.deleteDevice('big');
    expect(set.hasDevice('big')).toBe(false);
    expect(usedWithBig - set.status().data.usedBytes).toBeGreaterThanOrEqual(8n << 20n);
  });

  test('shutdown keeps the data; reopen finds every device and file', async () => {
    const records = set
      .deviceRecords()
      .map((d) => [d.hash, d.deviceId])
      .sort();
    const txid = set.transactionId;
    await set.shutdown();
    expect(dm.info({ name: set.poolName })).toBeNull();
    expect(dm.list().filter((d) => d.name.startsWith('dmtest-'))).toEqual([]);
    set = await DeviceSet.open(home, SMALL);
    expect(
      set
        .deviceRecords()
        .map((d) => [d.hash, d.deviceId])
        .sort(),
    ).toEqual(records);
    expect(set.transactionId).toBe(txid);
    expect(thinIdsOf(set.poolName, dm)).toEqual(
      set
        .deviceRecords()
        .map((d) => d.deviceId)
        .sort((a, b) => a - b),
    );
    await set.mountDevice('g3', mnt('g3'));
    expect(readFileSync(join(home, 'm/g3/after'), 'utf8')).toBe('x');
    await set.unmountDevice('g3');
  });

  test('resizePool grows the data device', async () => {
    await set.resizePool(bytes(512 * 2 ** 20));
    expect(set.status().data.totalBytes).toBe(512n * 2n ** 20n);
    expect(dmsetup('table', set.poolName)).toMatch(/^0 1048576 thin-pool /);
  });
});
