// A failed pool init leaves nothing: whatever DeviceSet.open made (folders, sparse files, loop
// devices, the pool, the base's thin id, metadata) is removed in reverse order, the error names the
// real cause, and a retry with fixed options succeeds. Failures are real ones (mkfs refusing a
// size) or injected at the ioctl (a refused LOOP_CONFIGURE, DM_TABLE_LOAD or DM_TARGET_MSG).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { Errno, FaultInjectingTransport, libcTransport, type IoctlArg, type IoctlResult, type Transport } from '../../src/ioctl/index.js';
import { listLoops } from '../../src/loop/index.js';
import { DmCmd, dmRequest } from '../../src/structs/dm-ioctl.js';
import { LOOP_CONFIGURE } from '../../src/structs/loop.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { CommandError, OptionError } from '../../src/thin/errors.js';
import { findExecutable } from '../../src/thin/options.js';
import { newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';
import { oracleLs } from './support/env.js';

requireKernelTier();

/** Every path under `dir` (relative), or null when it does not exist. */
function tree(dir: string): string[] | null {
  if (!existsSync(dir)) return null;
  const out: string[] = [];
  const walk = (sub: string) => {
    for (const e of readdirSync(join(dir, sub), { withFileTypes: true })) {
      const rel = sub === '' ? e.name : `${sub}/${e.name}`;
      out.push(e.isDirectory() ? `${rel}/` : `${rel} ${statSync(join(dir, rel)).size}`);
      if (e.isDirectory()) walk(rel);
    }
  };
  walk('');
  return out.sort();
}

/** The kernel's side, by independent means where they exist: dmsetup ls, and the loop devices. */
function kernel(): { dm: string[]; loops: string[] } {
  return {
    dm: [...oracleLs().keys()].sort(),
    loops: listLoops()
      .map((l) => `${l.path} ${l.backingFile}`)
      .sort(),
  };
}

/** A transport that fails the `nth` (1-based) call of `request` with `errno`, once. */
function failingNth(request: number, nth: number, errno: number): Transport & { hit: () => boolean } {
  let seen = 0;
  return {
    ioctl(fd: number, req: number, arg: IoctlArg): IoctlResult {
      if (req === request && ++seen === nth) return { ret: -1, errno };
      return libcTransport.ioctl(fd, req, arg);
    },
    async ioctlAsync(fd: number, req: number, arg: IoctlArg): Promise<IoctlResult> {
      if (req === request && ++seen === nth) return { ret: -1, errno };
      return libcTransport.ioctlAsync(fd, req, arg);
    },
    hit: () => seen >= nth,
  };
}

describe('a failed pool init leaves the kernel and the home folder as they were', () => {
  let parent: string;
  beforeAll(async () => {
    await sweep();
    parent = newHome('init');
  });
  afterEach(async () => {
    await sweep();
  });
  afterAll(() => rmSync(parent, { recursive: true, force: true }));

  /** Runs a failing open in a home that does not exist yet and in one that exists (empty), checks
   *  both are as before, then a retry with `fixed` succeeds. */
  async function failsCleanly(tag: string, bad: () => Promise<unknown>, home: string, fixed: readonly string[]): Promise<unknown> {
    const before = { kernel: kernel(), home: tree(home) };
    const err = await bad().then(
      () => new Error('expected the open to fail'),
      (e: unknown) => e,
    );
    expect({ kernel: kernel(), home: tree(home) }, tag).toEqual(before);
    const set = await DeviceSet.open(home, fixed);
    expect(set.deviceRecords().map((r) => [r.hash, r.initialized])).toEqual([['', true]]);
    await set.shutdown();
    expect(kernel()).toEqual(before.kernel);
    return err;
  }

  test("mkfs fails (xfs told to make a 100 MiB file system): the error is mkfs.xfs's reason, nothing stays", async () => {
    expect(findExecutable('mkfs.xfs'), 'mkfs.xfs is not on PATH (xfsprogs; see docs/testing.md)').not.toBeNull();
    const xfs = [...SMALL.filter((o) => !o.startsWith('dm.basesize')), 'dm.basesize=320M', 'dm.fs=xfs'];
    const home = join(parent, 'mkfs');
    const err = await failsCleanly('mkfs', () => DeviceSet.open(home, [...xfs, 'dm.mkfsarg=-d', 'dm.mkfsarg=size=100m']), home, xfs);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message.split('\n')[0]).toMatch(/^mkfs\.xfs failed \(exit 1\): Filesystem must be larger than 300MB\.$/);
  });

  test('xfs on a base under 300 MiB is refused before anything is made', async () => {
    const home = join(parent, 'xfs-small');
    const before = kernel();
    const err = await DeviceSet.open(home, [...SMALL.filter((o) => !o.startsWith('dm.basesize')), 'dm.fs=xfs', 'dm.basesize=128M']).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OptionError);
    expect((err as Error).message).toMatch(/dm\.basesize="128M": mkfs\.xfs refuses file systems under 300 MiB/);
    expect(existsSync(home)).toBe(false);
    expect(kernel()).toEqual(before);
  });

  test('the metadata loop device cannot be attached: the data loop device is detached again', async () => {
    const home = join(parent, 'loop');
    const t = failingNth(LOOP_CONFIGURE, 2, Errno.ENOMEM);
    const err = await failsCleanly('loop', () => DeviceSet.open(home, SMALL, { loop: { transport: t } }), home, SMALL);
    expect(t.hit()).toBe(true);
    expect((err as { code?: unknown }).code).toBe('ENOMEM');
  });

  test('the pool table is refused (DM_TABLE_LOAD): no device, no loop device, an existing home kept', async () => {
    const home = newHome('init-load'); // exists before, empty: it stays, empty
    try {
      const t = new FaultInjectingTransport(libcTransport).failNext({ request: dmRequest(DmCmd.DM_TABLE_LOAD) }, Errno.EINVAL);
      const dm = DeviceMapper.open({ udev: 'off', transport: t });
      try {
        const err = await failsCleanly('load', () => DeviceSet.open(home, SMALL, { dm }), home, SMALL);
        expect(t.pendingFaults()).toBe(0);
        expect((err as { code?: unknown }).code).toBe('EINVAL');
        expect(existsSync(home)).toBe(true);
      } finally {
        dm.close();
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('the base cannot be created (create_thin refused): the pool goes, the metadata too', async () => {
    const home = join(parent, 'base');
    const t = new FaultInjectingTransport(libcTransport).failNext({ request: dmRequest(DmCmd.DM_TARGET_MSG) }, Errno.ENOSPC);
    const dm = DeviceMapper.open({ udev: 'off', transport: t });
    try {
      const err = await failsCleanly('base', () => DeviceSet.open(home, SMALL, { dm }), home, SMALL);
      expect(t.pendingFaults()).toBe(0);
      expect((err as { code?: unknown }).code).toBe('ENOSPC');
    } finally {
      dm.close();
    }
  });

  test('a home that cannot hold folders (/proc) fails with the errno instead of spinning', () => {
    // In a child with a deadline: Node's recursive mkdir spun forever here, blocking the loop.
    const src = join(import.meta.dirname, '../../src/thin/device-set.ts');
    const code = `import { DeviceSet } from ${JSON.stringify(src)};
      DeviceSet.open('/proc', ${JSON.stringify(SMALL)}).then(() => console.log('opened'), (e) => console.log('code', e.code));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, 'killed at the deadline: still spinning').toBeNull();
    expect(r.stdout.trim()).toBe('code ENOENT');
    expect(existsSync('/proc/devicemapper')).toBe(false);
  }, 150_000);
});
