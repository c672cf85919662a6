// The storage-driver face in a real kernel: layers on layers, reference-counted get/put,
// status rows, remove, cleanup and re-init.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { Driver } from '../../src/driver/driver.js';
import { isMounted } from '../../src/thin/mount.js';
import { requireKernelTier, newHome, SMALL, sweep } from './thin-support.js';
import { deviceName } from '../../src/dm/names.js';

requireKernelTier();

describe('driver', () => {
  let dm: DeviceMapper;
  let home: string;
  let d: Driver;
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
    home = newHome('driver');
    d = await Driver.init(home, SMALL);
  });
  afterAll(async () => {
    await d?.cleanup().catch(() => undefined);
    await sweep();
    dm.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('create, get, put with reference counts', async () => {
    expect(String(d)).toBe('devicemapper');
    await d.create(deviceName('img'));
    expect(d.exists('img')).toBe(true);
    expect(d.exists('nope')).toBe(false);
    const root = await d.get('img');
    expect(root).toBe(join(home, 'mnt', 'img', 'rootfs'));
    writeFileSync(join(root, 'f'), 'img');
    expect(await d.get('img')).toBe(root);
    await d.put('img');
    expect(isMounted(join(home, 'mnt', 'img'))).toBe(true);
    await d.put('img');
    expect(isMounted(join(home, 'mnt', 'img'))).toBe(false);
    await d.put('img'); // an extra put is harmless

    await d.create(deviceName('ctr'), 'img');
    const croot = await d.get('ctr');
    expect(readFileSync(join(croot, 'f'), 'utf8')).toBe('img');
    writeFileSync(join(croot, 'g'), 'ctr');
    await d.put('ctr');
    const again = await d.get('img');
    expect(existsSync(join(again, 'g'))).toBe(false);
    await d.put('img');
  });

  test("status rows as Docker's devmapper driver", () => {
    const rows = new Map(d.status());
    expect([...rows.keys()]).toEqual([
      'Pool Name',
      'Pool Blocksize',
      'Data file',
      'Metadata file',
      'Data Space Used',
      'Data Space Total',
      'Metadata Space Used',
      'Metadata Space Total',
    ]);
    expect(rows.get('Pool Blocksize')).toBe('64 Kb');
    expect(rows.get('Data Space Total')).toBe('256.0 Mb');
    expect(rows.get('Data file')).toBe(join(home, 'devicemapper', 'data'));
  });

  test('remove (also of a mounted layer) and of an unknown id', async () => {
    await d.get('ctr');
    await d.remove('ctr');
    expect(d.exists('ctr')).toBe(false);
    expect(existsSync(join(home, 'mnt', 'ctr'))).toBe(false);
    await d.remove('never-existed');
  });

  test('cleanup unmounts everything; init again finds the layers', async () => {
    await d.get('img');
    await d.cleanup();
    expect(isMounted(join(home, 'mnt', 'img'))).toBe(false);
    expect(dm.list().filter((x) => x.name.startsWith('dmtest-'))).toEqual([]);
    d = await Driver.init(home, SMALL);
    expect(d.exists('img')).toBe(true);
    const root = await d.get('img');
    expect(readFileSync(join(root, 'f'), 'utf8')).toBe('img');
    await d.put('img');
  });
});
