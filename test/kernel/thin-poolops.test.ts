// The pool's own operations when something goes wrong: a loop file gone, a resize that fails
// between suspend and resume, close() while operations are queued, and shutdown of a pool whose
// metadata files are unreadable. Checked with dmsetup, losetup and the kernel's mount table.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { FaultInjectingTransport } from '../../src/ioctl/fault.js';
import { libcTransport } from '../../src/ioctl/libc.js';
import { listLoops } from '../../src/loop/index.js';
import { DmCmd, dmRequest } from '../../src/structs/dm-ioctl.js';
import { bytes } from '../../src/structs/units.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { HomeLock } from '../../src/thin/lock.js';
import { mountTable } from '../../src/thin/mount.js';
import { cli } from './support/env.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const homes: string[] = [];
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
    await sweep();
    for (const l of listLoops().filter((l) => l.backingFile.startsWith(`${h}/`))) execFileSync('losetup', ['-d', l.path]);
    rmSync(h, { recursive: true, force: true });
  }
});

const ourDevices = (): string[] =>
  dmsetup('ls')
    .split('\n')
    .filter((l) => l.startsWith('dmtest-'));
const loopsOf = (h: string) => listLoops().filter((l) => l.backingFile.startsWith(`${h}/`));
const caught = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );
/** `dmsetup info` of the pool: its State line and whether an inactive table is loaded. */
function poolInfo(name: string): { state: string; inactive: boolean } {
  const out = dmsetup('info', name);
  return { state: /State:\s+(\S+)/.exec(out)?.[1] ?? '', inactive: /Tables present:.*INACTIVE/.test(out) };
}
const poolSectors = (name: string): bigint => BigInt(dmsetup('table', name).split(' ')[1]!);

describe('a loop file of an existing pool is missing: refused, never made again', () => {
  test('data or metadata file gone: ENOENT naming it, nothing made or changed; back in place, the pool opens', async () => {
    const h = home('missing');
    const set = await DeviceSet.open(h, SMALL);
    await set.addDevice('layer', '');
    await set.shutdown();
    const state = join(h, 'metadata', 'deviceset-metadata');
    for (const which of ['data', 'metadata']) {
      const file = join(h, 'devicemapper', which);
      const other = join(h, 'devicemapper', which === 'data' ? 'metadata' : 'data');
      const aside = `${h}/aside`;
      renameSync(file, aside);
      // Not written to: the same inode, size and times (reading 256 MiB through hostfs is slow).
      const fingerprint = (f: string) => {
        const st = statSync(f, { bigint: true });
        return { ino: st.ino, size: st.size, blocks: st.blocks, mtime: st.mtimeNs, ctime: st.ctimeNs };
      };
      const before = { other: fingerprint(other), state: readFileSync(state) };
      const err = await caught(DeviceSet.open(h, SMALL));
      expect(err).toMatchObject({ code: 'ENOENT', path: file });
      expect((err as Error).message).toContain(file);
      expect(existsSync(file)).toBe(false);
      expect(fingerprint(other)).toEqual(before.other);
      expect(readFileSync(state).equals(before.state)).toBe(true);
      expect(ourDevices()).toEqual([]);
      expect(loopsOf(h)).toEqual([]);
      renameSync(aside, file);
    }
    const again = await DeviceSet.open(h, SMALL);
    expect(again.list()).toEqual(['layer']);
    await again.shutdown();
  }, 180_000);
});

describe('crash points of pool set-up', () => {
  test.each(['open:loops-attached', 'open:pool-created'])('a failure at %s of a new pool undoes it all', async (at) => {
    const h = home('setup');
    const seen: string[] = [];
    const err = await caught(
      DeviceSet.open(h, SMALL, {
        hook: (p) => {
          seen.push(p);
          if (p === at) throw new Error(`stopped at ${p}`);
        },
      }),
    );
    expect((err as Error | undefined)?.message).toBe(`stopped at ${at}`);
    expect(ourDevices()).toEqual([]);
    expect(loopsOf(h)).toEqual([]);
    expect(existsSync(join(h, 'devicemapper', 'data'))).toBe(false);
    expect(existsSync(join(h, 'metadata', 'deviceset-metadata'))).toBe(false);
    // And the home opens afterwards.
    const set = await DeviceSet.open(h, SMALL);
    await set.shutdown();
  });
});

describe('resize: the pool is never left suspended', () => {
  const GROWN = bytes(384 * 2 ** 20);
  const SUSPEND = dmRequest(DmCmd.DM_DEV_SUSPEND);

  /** A DeviceSet whose DeviceMapper fails the next `times` resumes (DM_DEV_SUSPEND after the suspend) with EIO. */
  async function withFailingResume(h: string, times: number) {
    const t = new FaultInjectingTransport(libcTransport);
    const dm = DeviceMapper.open({ transport: t });
    const set = await DeviceSet.open(h, SMALL, { dm });
    const arm = () => {
      let n = 0;
      t.beforeCall = (call) => {
        if (call.request !== SUSPEND) return;
        n++;
        if (n >= 2 && n < 2 + times) t.failNext({ nth: call.index }, osConstants.errno.EIO);
      };
    };
    return { set, dm, t, arm };
  }

  test('every resize step is a crash point; a failure after suspend resumes the old table', async () => {
    const h = home('resize');
    const seen: string[] = [];
    let stopAt = 'resize:suspended';
    const set = await DeviceSet.open(h, SMALL, {
      hook: (p) => {
        seen.push(p);
        if (p === stopAt) throw new Error(`stopped at ${p}`);
      },
    });
    const before = poolSectors(set.poolName);
    const err = await caught(set.resizePool(GROWN));
    expect((err as Error | undefined)?.message).toBe('stopped at resize:suspended');
    expect(seen.filter((p) => p.startsWith('resize:'))).toEqual([
      'resize:file-grown',
      'resize:loop-capacity',
      'resize:table-loaded',
      'resize:suspended',
    ]);
    expect(poolInfo(set.poolName)).toEqual({ state: 'ACTIVE', inactive: false });
    expect(poolSectors(set.poolName)).toBe(before);
    // The file is already grown: the same resize again completes.
    stopAt = 'resize:table-loaded';
    await caught(set.resizePool(GROWN));
    expect(poolInfo(set.poolName)).toEqual({ state: 'ACTIVE', inactive: false });
    stopAt = '';
    await set.resizePool(GROWN);
    expect(poolSectors(set.poolName)).toBe(BigInt(GROWN) / 512n);
    await set.shutdown();
  });

  test('the resume fails once: resize resumes the old table itself', async () => {
    const h = home('resize-eio');
    const { set, t, arm } = await withFailingResume(h, 1);
    const before = poolSectors(set.poolName);
    arm();
    const err = await caught(set.resizePool(GROWN));
    t.beforeCall = undefined;
    expect(err).toMatchObject({ code: 'EIO' });
    expect(t.pendingFaults()).toBe(0);
    expect(poolInfo(set.poolName)).toEqual({ state: 'ACTIVE', inactive: false });
    expect(poolSectors(set.poolName)).toBe(before);
    await set.addDevice('after', ''); // I/O goes through
    await set.shutdown();
  });

  test('the resume fails every time: the next open resumes the pool and clears the grown table', async () => {
    const h = home('resize-stuck');
    const { set, dm, t, arm } = await withFailingResume(h, 2);
    const before = poolSectors(set.poolName);
    arm();
    const err = await caught(set.resizePool(GROWN));
    t.beforeCall = undefined;
    expect(err).toMatchObject({ code: 'EIO' });
    expect(poolInfo(set.poolName).state).toBe('SUSPENDED');
    await set.close();
    dm.close();
    const again = await DeviceSet.open(h, SMALL);
    expect(poolInfo(again.poolName)).toEqual({ state: 'ACTIVE', inactive: false });
    expect(poolSectors(again.poolName)).toBe(before);
    await again.addDevice('after', ''); // I/O goes through
    await again.resizePool(GROWN);
    expect(poolSectors(again.poolName)).toBe(BigInt(GROWN) / 512n);
    await again.shutdown();
  });
});

describe('close() waits for queued operations', () => {
  test('the lock is let go only after the queue; later operations are refused', async () => {
    const h = home('close');
    const set = await DeviceSet.open(h, SMALL);
    let added: 'pending' | 'done' | Error = 'pending';
    const add = set.addDevice('queued', '').then(
      () => {
        added = 'done';
      },
      (e: Error) => {
        added = e;
      },
    );
    const closing = set.close();
    expect(await caught(set.addDevice('late', ''))).toMatchObject({ name: 'PoolStateError' });
    expect(HomeLock.holder(join(h, 'lock'))).toBe(process.pid);
    await closing;
    expect(added).toBe('done');
    expect(HomeLock.holder(join(h, 'lock'))).toBeNull();
    await add;
    const again = await DeviceSet.open(h, SMALL);
    expect(again.list()).toEqual(['queued']);
    await again.shutdown();
  });
});

describe('pool shutdown with unreadable metadata (CLI)', () => {
  test('EUCLEAN for other commands; shutdown takes down mounts, devices and loops from the kernel alone', () => {
    const h = home('cli-corrupt');
    const on = (...args: string[]) => [...args, '--home', h];
    const opts = SMALL.flatMap((o) => ['--storage-opt', o]);
    const ok = (args: string[]) => {
      const r = cli(args);
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    ok(on('pool', 'init', ...opts));
    ok(on('layer', 'create', 'l1'));
    const mp = ok(on('layer', 'mount', 'l1')).trim();
    expect(mountTable().some((m) => m.mountPoint === mp)).toBe(true);
    writeFileSync(join(h, 'metadata', 'deviceset-metadata'), 'garbage\n');
    const status = cli(on('pool', 'status'));
    expect(status.status).not.toBe(0);
    expect(status.stderr).toContain('EUCLEAN');

    const down = cli(on('pool', 'shutdown'));
    expect(down.status, down.stderr).toBe(0);
    expect(down.stdout).toContain(mp);
    expect(ourDevices()).toEqual([]);
    expect(execFileSync('losetup', ['-a'], { encoding: 'utf8' })).not.toContain(h);
    expect(mountTable().filter((m) => m.mountPoint.startsWith(`${h}/`))).toEqual([]);
    expect(readFileSync(join(h, 'metadata', 'deviceset-metadata'), 'utf8')).toBe('garbage\n'); // the metadata is not ours to fix
    expect(HomeLock.holder(join(h, 'lock'))).toBeNull();
    // A second shutdown: nothing active, still exit 0.
    expect(cli(on('pool', 'shutdown')).status).toBe(0);
  }, 300_000);
});
