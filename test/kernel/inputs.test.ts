// Input refused where it enters, in a real kernel: Driver ids that would mount the base over
// <home>/mnt or reach outside home, a remove that must not delete the files of a file system still
// mounted, and the dm name `control`, which is /dev/mapper/control's.
import { existsSync, lstatSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import type { DeviceName } from '../../src/dm/names.js';
import { Driver } from '../../src/driver/driver.js';
import { InvalidHashError } from '../../src/thin/errors.js';
import { isMounted } from '../../src/thin/mount.js';
import { cli } from './support/env.js';
import { newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const CONTROL = '/dev/mapper/control';

describe('driver ids and remove', () => {
  let dm: DeviceMapper;
  let home: string;
  let d: Driver;
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
    home = newHome('inputs');
    d = await Driver.init(home, [...SMALL, 'dm.use_deferred_deletion=true']);
  });
  afterAll(async () => {
    await d?.cleanup().catch(() => undefined);
    await sweep();
    dm.close();
    rmSync(home, { recursive: true, force: true });
  });

  test("'' is the base: not a layer to get, put, remove or create", async () => {
    await expect(d.get('')).rejects.toThrow(InvalidHashError);
    expect(isMounted(join(home, 'mnt'))).toBe(false);
    await expect(d.put('')).rejects.toThrow(InvalidHashError);
    await expect(d.remove('')).rejects.toThrow(InvalidHashError);
    await expect(d.create('')).rejects.toThrow(InvalidHashError);
  });

  test('an id never reaches outside <home>/mnt', async () => {
    const outside = join(dirname(home), `dmtest-outside-${process.pid}`);
    const id = `../../${basename(outside)}`;
    expect(join(home, 'mnt', id)).toBe(outside);
    await expect(d.get(id)).rejects.toThrow(InvalidHashError);
    await expect(d.get('a\nb')).rejects.toThrow(InvalidHashError);
    await expect(d.create('ok', '../x')).rejects.toThrow(InvalidHashError);
    expect(existsSync(outside)).toBe(false);
    expect(d.exists('ok')).toBe(false);
  });

  test('remove leaves a file system that is still mounted (deferred deletion) whole', async () => {
    await d.create('busy');
    const mp = join(home, 'mnt', 'busy');
    // A mount the Driver did not make (as another process's `devmapper layer mount busy`).
    await d.deviceSet.mountDevice('busy', mp, '', { createMountPoint: true });
    writeFileSync(join(mp, 'keep'), 'data');
    await d.remove('busy'); // busy: its deletion is deferred
    expect(d.exists('busy')).toBe(false);
    expect(isMounted(mp)).toBe(true);
    expect(readFileSync(join(mp, 'keep'), 'utf8')).toBe('data');
    await d.deviceSet.unmountDevice('busy');
    expect(isMounted(mp)).toBe(false);
  });

  test('remove of an unmounted layer takes its empty mount point', async () => {
    await d.create('idle');
    const root = await d.get('idle');
    writeFileSync(join(root, 'f'), 'x');
    await d.put('idle');
    await d.remove('idle');
    expect(existsSync(join(home, 'mnt', 'idle'))).toBe(false);
  });
});

// Last: on a kernel that takes the name, a failure here could leave the control node replaced.
describe('the dm name control', () => {
  afterAll(async () => {
    const dm = DeviceMapper.open({ udev: 'off' }); // remakes a stale control node
    try {
      const made = dm.list().find((e) => e.name === 'control');
      if (made) await dm.remove({ dev: made.dev });
    } finally {
      dm.close();
    }
  });

  test('dm create control and mknodes(control) fail and leave /dev/mapper/control a character device', () => {
    const before = lstatSync(CONTROL);
    expect(before.isCharacterDevice()).toBe(true);
    // One CLI run (the node code of a separate process); mknodes in this one.
    const create = cli(['dm', 'create', 'control', '--table', '0 8 zero']);
    expect(create.status, create.stderr).toBe(2);
    expect(create.stderr).toMatch(/control node/);
    const dm = DeviceMapper.open({ udev: 'off' });
    try {
      expect(() => dm.mknodes('control' as DeviceName)).toThrow(InvalidArgumentError);
      expect(dm.list().map((e) => e.name)).not.toContain('control');
    } finally {
      dm.close();
    }
    const after = lstatSync(CONTROL);
    expect(after.isCharacterDevice()).toBe(true);
    expect(after.rdev).toBe(before.rdev);
    expect(after.ino).toBe(before.ino);
  });
});
