// The snapshotter against the real kernel, as containerd's client uses it: what Prepare and View
// return is mounted with mount(8), written, unmounted, committed; children see their parents'
// files; views are read-only; the error codes containerd acts on; Update's masks; Usage from the
// pool's own metadata; concurrent calls; a restart (the pool gone, as after a reboot) re-activates.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clockRealtimeNs } from '../../src/ioctl/index.js';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { oracleInfo } from './support/env.js';
import {
  activeSnapDevices,
  checkPoolAgrees,
  mountAt,
  removeSnapHome,
  SNAP_OPTIONS,
  snapHome,
  tree,
  umount,
} from './snapshotter-support.js';
import { requireKernelTier, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

const MiB = 1 << 20;

async function refusal(p: Promise<unknown>): Promise<SnapshotError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SnapshotError) return e;
    throw e;
  }
  throw new Error('expected a SnapshotError, the call succeeded');
}

function writeFile(path: string, data: string | Buffer): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

describe('snapshotter', () => {
  let home = '';
  let snap: Snapshotter;
  let mnt = '';
  const dir = (name: string) => join(mnt, name);

  beforeAll(async () => {
    await sweep();
    home = snapHome();
    mnt = `${home}-mnt`;
    snap = await Snapshotter.open(home, SNAP_OPTIONS);
  });

  afterAll(async () => {
    await snap?.close();
    if (mnt) {
      for (const d of existsSync(mnt) ? readdirSync(mnt) : []) {
        try {
          execFileSync('umount', [join(mnt, d)], { stdio: 'ignore' });
        } catch {}
      }
      rmSync(mnt, { recursive: true, force: true });
    }
    if (home) await removeSnapHome(home);
  });

  test('a parentless Prepare: an empty root of mode 0755 (no lost+found), writable; times from the wall clock', async () => {
    const before = clockRealtimeNs();
    const mounts = await snap.prepare('default/1/k1', '', { 'containerd.io/snapshot/x': 'y' });
    const after = clockRealtimeNs();
    expect(mounts).toEqual([
      { type: 'ext4', source: expect.stringMatching(/^\/dev\/mapper\/dmtest-.*-snap-\d+$/), target: '', options: [] },
    ]);
    expect(existsSync(mounts[0]!.source)).toBe(true);
    mountAt(mounts, dir('k1'));
    expect(readdirSync(dir('k1'))).toEqual([]);
    expect(statSync(dir('k1')).mode & 0o7777).toBe(0o755);
    writeFile(join(dir('k1'), 'a.txt'), 'from k1');
    umount(dir('k1'));
    const info = await snap.stat('default/1/k1');
    expect(info).toMatchObject({ name: 'default/1/k1', parent: '', kind: 'active', labels: { 'containerd.io/snapshot/x': 'y' } });
    expect(info.created).toBe(info.updated);
    expect(info.created >= before && info.created <= after).toBe(true);
    // Sub-millisecond precision is kept (a ms-rounded time would end in six zeros nearly always).
    const listed = (await snap.list()).find((i) => i.name === 'default/1/k1');
    expect(listed).toEqual(info);
  });

  test('Commit: the key becomes the name; a child sees the parent, its writes stay its own', async () => {
    const before = clockRealtimeNs();
    await snap.commit('default/2/c1', 'default/1/k1', { 'containerd.io/snapshot/c': '1' });
    const after = clockRealtimeNs();
    expect((await refusal(snap.stat('default/1/k1'))).code).toBe('NotFound');
    const c1 = await snap.stat('default/2/c1');
    expect(c1).toMatchObject({ name: 'default/2/c1', parent: '', kind: 'committed', labels: { 'containerd.io/snapshot/c': '1' } });
    expect(c1.created).toBe(c1.updated);
    expect(c1.created >= before && c1.created <= after).toBe(true);
    // A committed snapshot's device is not left active.
    expect(activeSnapDevices(snap.poolName)).toEqual([]);

    const m2 = await snap.prepare('default/3/k2', 'default/2/c1', {});
    mountAt(m2, dir('k2'));
    expect(tree(dir('k2'))).toEqual(['a.txt=from k1']);
    writeFile(join(dir('k2'), 'b.txt'), 'from k2');
    writeFile(join(dir('k2'), 'a.txt'), 'changed in k2');
    umount(dir('k2'));
    await snap.commit('default/4/c2', 'default/3/k2', {});
    const m3 = await snap.prepare('default/5/k3', 'default/4/c2', {});
    mountAt(m3, dir('k3'));
    expect(tree(dir('k3'))).toEqual(['a.txt=changed in k2', 'b.txt=from k2']);
    umount(dir('k3'));
    // The parent is untouched.
    const v = await snap.view('default/6/v1', 'default/2/c1', {});
    mountAt(v, dir('v1'));
    expect(tree(dir('v1'))).toEqual(['a.txt=from k1']);
    umount(dir('v1'));
    expect((await snap.stat('default/5/k3')).parent).toBe('default/4/c2');
  });

  test('a View is mounted read-only: writes fail with EROFS', async () => {
    const mounts = await snap.view('default/7/v2', 'default/4/c2', {});
    expect(mounts[0]!.options).toEqual(['ro']);
    expect((await snap.stat('default/7/v2')).kind).toBe('view');
    expect(await snap.mounts('default/7/v2')).toEqual(mounts);
    mountAt(mounts, dir('v2'));
    try {
      expect(() => writeFileSync(join(dir('v2'), 'new'), 'x')).toThrow(expect.objectContaining({ code: 'EROFS' }));
    } finally {
      umount(dir('v2'));
    }
  });

  test('the error codes containerd acts on', async () => {
    const code = async (p: Promise<unknown>) => (await refusal(p)).code;
    // Prepare / View.
    expect(await code(snap.prepare('default/5/k3', '', {}))).toBe('AlreadyExists');
    expect(await code(snap.prepare('default/2/c1', '', {}))).toBe('AlreadyExists');
    expect(await code(snap.prepare('n1', 'no/such/parent', {}))).toBe('NotFound');
    expect(await code(snap.prepare('n2', 'default/5/k3', {}))).toBe('InvalidArgument');
    expect(await code(snap.view('n3', 'default/7/v2', {}))).toBe('InvalidArgument');
    expect(await code(snap.view('default/7/v2', '', {}))).toBe('AlreadyExists');
    // Mounts.
    expect(await code(snap.mounts('no/such'))).toBe('NotFound');
    expect(await code(snap.mounts('default/2/c1'))).toBe('FailedPrecondition');
    // Commit.
    expect(await code(snap.commit('default/2/c1', 'default/5/k3', {}))).toBe('AlreadyExists');
    expect(await code(snap.commit('new/name', 'no/such', {}))).toBe('NotFound');
    expect(await code(snap.commit('new/name', 'default/7/v2', {}))).toBe('FailedPrecondition');
    expect(await code(snap.commit('new/name', 'default/2/c1', {}))).toBe('FailedPrecondition');
    // Remove.
    expect(await code(snap.remove('no/such'))).toBe('NotFound');
    const parent = await refusal(snap.remove('default/2/c1'));
    expect(parent.code).toBe('FailedPrecondition');
    expect(parent.message).toMatch(/remove/);
    // Stat / Usage / Update.
    expect(await code(snap.stat('no/such'))).toBe('NotFound');
    expect(await code(snap.usage('no/such'))).toBe('NotFound');
    expect(await code(snap.update({ name: 'no/such', labels: {} }, []))).toBe('NotFound');
    // Nothing refused left anything behind.
    expect((await snap.list()).map((i) => i.name).sort()).toEqual(
      ['default/2/c1', 'default/4/c2', 'default/5/k3', 'default/6/v1', 'default/7/v2'].sort(),
    );
  });

  test('Remove of a mounted snapshot: FailedPrecondition, nothing changed; unmounted, it goes', async () => {
    const m = await snap.prepare('default/8/busy', 'default/4/c2', {});
    mountAt(m, dir('busy'));
    try {
      const e = await refusal(snap.remove('default/8/busy'));
      expect(e.code).toBe('FailedPrecondition');
      expect((await snap.stat('default/8/busy')).kind).toBe('active');
      expect(tree(dir('busy'))).toEqual(['a.txt=changed in k2', 'b.txt=from k2']);
    } finally {
      umount(dir('busy'));
    }
    const name = m[0]!.source.slice('/dev/mapper/'.length);
    expect(oracleInfo(name)).not.toBeNull();
    await snap.remove('default/8/busy');
    expect(oracleInfo(name)).toBeNull();
    expect((await refusal(snap.stat('default/8/busy'))).code).toBe('NotFound');
  });

  test('Update: only labels; [] and "labels" replace them all, "labels.<k>" sets or removes one', async () => {
    await snap.prepare('default/9/u', '', { a: '1', b: '2' });
    const created = (await snap.stat('default/9/u')).created;
    const u1 = await snap.update({ name: 'default/9/u', labels: { a: 'x', c: '3' } }, ['labels.a', 'labels.b']);
    expect(u1.labels).toEqual({ a: 'x' });
    expect(u1.created).toBe(created);
    expect(u1.updated > created).toBe(true);
    const u2 = await snap.update({ name: 'default/9/u', labels: { c: '3', d: '4' } }, []);
    expect(u2.labels).toEqual({ c: '3', d: '4' });
    expect(u2.updated > u1.updated).toBe(true);
    const u3 = await snap.update({ name: 'default/9/u', labels: { e: '5' } }, ['labels']);
    expect(u3.labels).toEqual({ e: '5' });
    for (const path of ['name', 'parent', 'kind', 'created_at', 'labels.']) {
      expect((await refusal(snap.update({ name: 'default/9/u', labels: {} }, [path]))).code, path).toBe('InvalidArgument');
    }
    expect(await snap.stat('default/9/u')).toEqual(u3);
    // Committed snapshots take updates too.
    const c = await snap.update({ name: 'default/2/c1', labels: { z: '26' } }, ['labels.z']);
    expect(c.labels).toEqual({ 'containerd.io/snapshot/c': '1', z: '26' });
    await snap.remove('default/9/u');
  });

  test('Usage: the blocks written, not the parent', async () => {
    await snap.prepare('default/10/use', 'default/4/c2', {});
    // Nothing written: every block is the parent's.
    expect(await snap.usage('default/10/use')).toEqual({ size: 0n, inodes: 0n });
    const m = await snap.mounts('default/10/use');
    mountAt(m, dir('use'));
    const idle = (await snap.usage('default/10/use')).size;
    writeFile(join(dir('use'), 'big.bin'), Buffer.alloc(4 * MiB, 0x5a));
    umount(dir('use'));
    const grown = (await snap.usage('default/10/use')).size;
    expect(grown - idle).toBeGreaterThanOrEqual(BigInt(4 * MiB));
    expect(grown - idle).toBeLessThan(BigInt(5 * MiB));
    await snap.commit('default/11/used', 'default/10/use', {});
    // A committed snapshot's usage stays; its child starts at 0 again.
    expect((await snap.usage('default/11/used')).size).toBe(grown);
    await snap.prepare('default/12/child', 'default/11/used', {});
    expect((await snap.usage('default/12/child')).size).toBe(0n);
    // A parentless one is measured against the base: nothing.
    await snap.prepare('default/13/fresh', '', {});
    expect((await snap.usage('default/13/fresh')).size).toBe(0n);
    await snap.remove('default/12/child');
    await snap.remove('default/13/fresh');
  });

  test('concurrent Prepares, Commits and Removes of different keys', async () => {
    const keys = Array.from({ length: 8 }, (_, i) => `par/${i}`);
    const mounts = await Promise.all(keys.map((k, i) => (i % 2 ? snap.prepare(k, 'default/4/c2', {}) : snap.view(k, '', {}))));
    expect(new Set(mounts.map((m) => m[0]!.source)).size).toBe(keys.length);
    for (const m of mounts) expect(existsSync(m[0]!.source)).toBe(true);
    const active = keys.filter((_, i) => i % 2);
    await Promise.all(active.map((k) => snap.commit(`${k}/done`, k, {})));
    // Two calls for one key: the second refused, not queued behind a half-made state.
    const [a, b] = await Promise.allSettled([snap.prepare('dup', '', {}), snap.prepare('dup', '', {})]);
    expect(a.status).toBe('fulfilled');
    expect(b.status === 'rejected' && (b.reason as SnapshotError).code).toBe('AlreadyExists');
    await Promise.all([
      ...active.map((k) => snap.remove(`${k}/done`)),
      ...keys.filter((_, i) => !(i % 2)).map((k) => snap.remove(k)),
      snap.remove('dup'),
    ]);
    expect((await snap.list()).filter((i) => i.name.startsWith('par/') || i.name === 'dup')).toEqual([]);
  });

  test('Commit of a snapshot still mounted: committed, its device kept active; a child of it works', async () => {
    const m = await snap.prepare('default/14/m', 'default/4/c2', {});
    mountAt(m, dir('m'));
    try {
      writeFile(join(dir('m'), 'm.txt'), 'mounted');
      await snap.commit('default/15/mc', 'default/14/m', {});
      expect((await snap.stat('default/15/mc')).kind).toBe('committed');
      const child = await snap.prepare('default/16/mchild', 'default/15/mc', {});
      mountAt(child, dir('mchild'));
      expect(tree(dir('mchild'))).toContain('m.txt=mounted');
      umount(dir('mchild'));
    } finally {
      umount(dir('m'));
    }
    await snap.remove('default/16/mchild');
    await snap.remove('default/15/mc');
  });

  test("the pool and the records agree: every record's thin id and nothing else", async () => {
    const ids = thinIdsOf(snap.poolName);
    const infos = await snap.list();
    // The pool's base, the snapshotter's base and one thin id per snapshot.
    expect(ids).toHaveLength(infos.length + 2);
  });

  test('restart after the pool went down (a reboot): records kept, active and view snapshots active again', async () => {
    const before = (await snap.list()).sort((x, y) => x.name.localeCompare(y.name));
    const mountsBefore = await snap.mounts('default/5/k3');
    const poolName = snap.poolName;
    await snap.close();
    expect((await refusal(snap.stat('default/5/k3'))).code).toBe('FailedPrecondition');
    const down = await DeviceSet.shutdownHome(home, SNAP_OPTIONS);
    expect(down.active).toBe(true);
    expect(activeSnapDevices(poolName)).toEqual([]);
    snap = await Snapshotter.open(home, SNAP_OPTIONS);
    expect((await snap.list()).sort((x, y) => x.name.localeCompare(y.name))).toEqual(before);
    const live = before.filter((i) => i.kind !== 'committed');
    expect(activeSnapDevices(poolName)).toHaveLength(live.length);
    expect(await snap.mounts('default/5/k3')).toEqual(mountsBefore);
    mountAt(mountsBefore, dir('k3again'));
    expect(tree(dir('k3again'))).toEqual(['a.txt=changed in k2', 'b.txt=from k2']);
    umount(dir('k3again'));
    const ids = await Promise.all(before.map(async (i) => (await snap.mounts(i.name).catch(() => null))?.[0]?.source));
    expect(ids.filter((s) => s !== undefined)).toHaveLength(live.length);
    await snap.close();
    const names = new Set<string>();
    for (const f of readdirSync(join(home, 'snapshots'))) if (/^snap-\d+\.json$/.test(f)) names.add(f.slice(0, -'.json'.length));
    await checkPoolAgrees(home, [...names]);
    snap = await Snapshotter.open(home, SNAP_OPTIONS);
  });
});
