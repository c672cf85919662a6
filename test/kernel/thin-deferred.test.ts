// Deferred removal and deferred deletion in a real kernel: a device held open (an fd on its node)
// is removed with DM_DEFERRED_REMOVE rather than EBUSY, activate cancels that pending remove so the
// device outlives its holder, and a busy device's deletion waits and is retried (with its blocks
// discarded) by the device-set's timer or the next delete. The pool's own metadata, read by our
// reader, says which thin ids it holds; dmsetup is the oracle for the device's state.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { DeviceBusyError, OptionError } from '../../src/thin/errors.js';
import { waitFor } from './support/env.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

const MiB = 1 << 20;
const REMOVAL = [...SMALL, 'dm.use_deferred_removal=true'];
const DELETION = [...SMALL, 'dm.use_deferred_removal=true', 'dm.use_deferred_deletion=true'];

/** 512-byte sectors the loop file has allocated (st_blocks): what a discard gives back. */
function allocatedBytes(file: string): number {
  return Number(statSync(file, { bigint: true }).blocks) * 512;
}

/** Writes `bytes` of non-zero data to the device through `fd` and syncs it (maps pool blocks). */
function fill(fd: number, bytes: number): void {
  const chunk = Buffer.alloc(MiB, 0x5a);
  for (let off = 0; off < bytes; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  fsyncSync(fd);
}

describe('deferred removal and deletion', () => {
  let dm: DeviceMapper;
  const homes: string[] = [];
  const fds: number[] = [];
  const sets: DeviceSet[] = [];
  const home = (tag: string) => {
    const h = newHome(tag);
    homes.push(h);
    return h;
  };
  const open = async (h: string, opts: string[], extras: Parameters<typeof DeviceSet.open>[2] = {}) => {
    const set = await DeviceSet.open(h, opts, extras);
    sets.push(set);
    return set;
  };
  /** An fd held on the device's node: the holder the tests let go of. */
  const hold = (path: string, flags = 'r') => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  const release = (fd: number) => {
    closeSync(fd);
    fds.splice(fds.indexOf(fd), 1);
  };
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
  });
  afterEach(async () => {
    for (const fd of fds.splice(0)) closeSync(fd);
    for (const s of sets.splice(0)) await s.shutdown().catch(() => undefined);
    await sweep();
    for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
  });
  afterAll(() => dm.close());

  test('dm.use_deferred_removal: deactivating an open device defers its remove to the last close; without it, EBUSY', async () => {
    const h = home('defrm');
    const set = await open(h, REMOVAL);
    await set.addDevice('a', '');
    await set.activateDevice('a');
    const name = deviceName(set.naming.deviceName('a'));
    const fd = hold(set.devicePath('a'));
    await set.deactivateDevice('a');
    const pending = dm.info({ name });
    expect(pending).toMatchObject({ deferredRemove: true, openCount: 1 });
    expect(dmsetup('info', name)).toMatch(/^State:\s+ACTIVE \(DEFERRED REMOVE\)$/m);
    release(fd);
    await waitFor(() => dm.info({ name }) === null, 'the deferred remove at the last close');
    // The thin id is untouched: only the dm device went.
    expect(set.hasDevice('a')).toBe(true);
    await set.shutdown();

    const plain = await open(h, SMALL);
    await plain.activateDevice('a');
    const fd2 = hold(plain.devicePath('a'));
    const err = await plain.deactivateDevice('a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceBusyError);
    expect((err as DeviceBusyError).code).toBe('EBUSY');
    expect((err as Error).message).toMatch(/open count 1/);
    expect(dm.info({ name })).toMatchObject({ deferredRemove: false, openCount: 1 });
    release(fd2);
    await plain.shutdown();
  });

  test('activate cancels a pending deferred remove: the device outlives its holder and mounts', async () => {
    const h = home('cancel');
    const set = await open(h, REMOVAL);
    await set.addDevice('b', '');
    await set.activateDevice('b');
    const name = deviceName(set.naming.deviceName('b'));
    const fd = hold(set.devicePath('b'));
    await set.deactivateDevice('b');
    expect(dm.info({ name })?.deferredRemove).toBe(true);

    const info = await set.activateDevice('b');
    expect(info).toMatchObject({ name, deferredRemove: false, openCount: 1 });
    expect(dmsetup('info', name)).toMatch(/^State:\s+ACTIVE$/m);
    release(fd);
    // dm_blk_close queues the deferred remove on the last close: nothing is queued now.
    await new Promise((r) => setTimeout(r, 300));
    expect(dm.info({ name })).toMatchObject({ deferredRemove: false, openCount: 0 });

    // Docker's case: a mount right after a deferred deactivation keeps its device.
    const fd2 = hold(set.devicePath('b'));
    await set.deactivateDevice('b');
    const mp = join(h, 'mnt');
    mkdirSync(mp);
    await set.mountDevice('b', mp);
    release(fd2);
    await new Promise((r) => setTimeout(r, 300));
    expect(dm.info({ name })).toMatchObject({ deferredRemove: false });
    writeFileSync(join(mp, 'kept'), 'still here');
    await set.unmountDevice('b');
    // The unmount deactivated it for real (nothing holds it now).
    expect(dm.info({ name })).toBeNull();
    await set.shutdown();
  });

  test('a busy device: its deferred deletion is retried by the timer once its holder goes, its blocks discarded', async () => {
    const h = home('timer');
    const errors: unknown[] = [];
    const set = await open(h, DELETION, { deferredDeleteIntervalMs: 200, onDeferredDeleteError: (e) => errors.push(e) });
    const dataFile = set.status().dataFile;
    await set.addDevice('t', '');
    await set.activateDevice('t');
    const rec = set.deviceRecords().find((r) => r.hash === 't')!;
    const fd = hold(set.devicePath('t'), 'r+');
    fill(fd, 16 * MiB);
    const before = allocatedBytes(dataFile);
    expect(thinIdsOf(set.poolName, dm)).toEqual([0, rec.deviceId]);

    await set.deleteDevice('t');
    expect(set.hasDevice('t')).toBe(false);
    expect(set.deviceRecords().find((r) => r.hash === 't')).toMatchObject({ deleted: true });
    // Pending: busy, so the timer's retries leave it alone (the thin id and its data stay).
    await new Promise((r) => setTimeout(r, 700));
    expect(thinIdsOf(set.poolName, dm)).toEqual([0, rec.deviceId]);

    release(fd);
    await waitFor(() => !set.deviceRecords().some((r) => r.hash === 't'), 'the timer to retry the deletion', 10_000);
    expect(thinIdsOf(set.poolName, dm)).toEqual([0]);
    expect(dm.info({ name: deviceName(set.naming.deviceName('t')) })).toBeNull();
    // dm.blkdiscard (the loop default): the 16 MiB written went back to the loop file as holes.
    expect(before - allocatedBytes(dataFile)).toBeGreaterThanOrEqual(16 * MiB);
    expect(errors).toEqual([]);
    await set.shutdown();
  });

  test('with the timer off, the next delete retries the pending deletions; close stops the timer', async () => {
    const h = home('next');
    const set = await open(h, DELETION, { deferredDeleteIntervalMs: 0 });
    await set.addDevice('p', '');
    await set.activateDevice('p');
    const p = set.deviceRecords().find((r) => r.hash === 'p')!;
    const fd = hold(set.devicePath('p'));
    await set.deleteDevice('p');
    release(fd);
    await new Promise((r) => setTimeout(r, 300));
    // No timer: still pending, the thin id still in the pool.
    expect(thinIdsOf(set.poolName, dm)).toEqual([0, p.deviceId]);
    await set.addDevice('q', '');
    const q = set.deviceRecords().find((r) => r.hash === 'q')!;
    expect(thinIdsOf(set.poolName, dm)).toEqual([0, p.deviceId, q.deviceId].sort((x, y) => x - y));
    await set.deleteDevice('q');
    expect(set.deviceRecords().map((r) => r.hash)).toEqual(['']);
    expect(thinIdsOf(set.poolName, dm)).toEqual([0]);
    await set.shutdown();

    // A timer that would fire every 100 ms, stopped by close: a pending deletion stays pending.
    const again = await open(h, DELETION, { deferredDeleteIntervalMs: 100 });
    await again.addDevice('r', '');
    await again.activateDevice('r');
    const r = again.deviceRecords().find((x) => x.hash === 'r')!;
    const fd2 = hold(again.devicePath('r'));
    await again.deleteDevice('r');
    await again.close();
    release(fd2);
    await new Promise((res) => setTimeout(res, 500));
    expect(thinIdsOf(again.poolName, dm)).toEqual([0, r.deviceId]);
    // The next open retries it.
    const last = await open(h, DELETION, { deferredDeleteIntervalMs: 0 });
    expect(thinIdsOf(last.poolName, dm)).toEqual([0]);
    expect(last.deviceRecords().map((x) => x.hash)).toEqual(['']);
    await last.shutdown();
  });

  test('a retry interval setInterval cannot take is refused before anything is made', async () => {
    const h = home('badms');
    for (const ms of [-1, 1.5, 2 ** 31, Number.NaN]) {
      const err = await DeviceSet.open(h, DELETION, { deferredDeleteIntervalMs: ms }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OptionError);
      expect(err).toMatchObject({ code: 'EINVAL', key: 'deferredDeleteIntervalMs' });
    }
    expect(readdirSync(h)).toEqual([]);
  });

  test('the retry timer never keeps the process alive', async () => {
    // The process's ref'd timers (what keeps the event loop alive), as Node counts them, compared
    // within one synchronous stretch (other timers come and go across awaits); the count is
    // checked first to see a ref'd interval at all.
    const refd = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const probe = setInterval(() => undefined, 60_000);
    const withProbe = refd();
    clearInterval(probe);
    expect(refd()).toBe(withProbe - 1);

    const h = home('unref');
    const set = await open(h, DELETION, { deferredDeleteIntervalMs: 50 });
    await set.addDevice('u', '');
    await set.activateDevice('u');
    const fd = hold(set.devicePath('u'));
    await set.deleteDevice('u');
    release(fd);
    // The timer is live: it completes the deletion.
    await waitFor(() => !set.deviceRecords().some((r) => r.hash === 'u'), 'the timer to retry the deletion', 10_000);
    expect(thinIdsOf(set.poolName, dm)).toEqual([0]);
    // shutdown clears the interval before it returns its promise: the count must not move.
    const withTimer = refd();
    const down = set.shutdown();
    expect(refd()).toBe(withTimer);
    await down;
  });
});
