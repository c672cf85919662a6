// The gRPC server over a real unix socket, called by a grpc-js client built from the same .proto:
// every method, errors as statuses, List in batches of 100 after filtering, the socket's claims
// (stale replaced, live refused) and close() draining a call in flight. Behind the server is
// RecordsOnlySnapshotter, a few records in memory standing in for the snapshotter (the pool and the
// kernel are the kernel tier's business: test/kernel/snapshotter-serve.test.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { LIST_BATCH, serve, SocketAddressError, type SnapshotServer } from '../../src/snapshotter/server.js';
import type { Mount, SnapshotInfo, SnapshotterApi, SnapshotUsage } from '../../src/snapshotter/types.js';
import { nsOf, type WireInfo } from '../../src/snapshotter/wire.js';
import { call, listBatches, refusal, type SnapshotsClient, snapshotsClient } from '../support/snapshots-client.js';

/** Snapshot records in a Map and containerd's rules for them; no devices. */
class RecordsOnlySnapshotter implements SnapshotterApi {
  readonly records = new Map<string, SnapshotInfo>();
  readonly calls: string[] = [];
  clock = 1_764_633_600_123_456_789n;
  /** When set, the next mounts() call waits for it. */
  gate: Promise<void> | undefined;
  /** When set, the next remove() throws it. */
  failRemove: unknown;
  updates: { info: Pick<SnapshotInfo, 'name' | 'labels'>; paths: readonly string[] }[] = [];
  closed = false;

  private now(): bigint {
    this.clock += 1001n;
    return this.clock;
  }
  private mountsOf(info: SnapshotInfo): Mount[] {
    return [{ type: 'ext4', source: `/dev/mapper/snap-${info.name.length}`, target: '', options: info.kind === 'view' ? ['ro'] : [] }];
  }
  private create(kind: 'view' | 'active', key: string, parent: string, labels: Record<string, string>): Mount[] {
    if (this.records.has(key)) throw new SnapshotError('AlreadyExists', `snapshot ${key} exists`);
    if (parent) {
      const p = this.records.get(parent);
      if (!p) throw new SnapshotError('NotFound', `parent ${parent} not found`);
      if (p.kind !== 'committed') throw new SnapshotError('InvalidArgument', `parent ${parent} is not committed`);
    }
    const t = this.now();
    const info: SnapshotInfo = { name: key, parent, kind, labels, created: t, updated: t };
    this.records.set(key, info);
    return this.mountsOf(info);
  }
  private get(key: string): SnapshotInfo {
    const info = this.records.get(key);
    if (!info) throw new SnapshotError('NotFound', `snapshot ${key} not found`);
    return info;
  }
  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    this.calls.push(`prepare ${key}`);
    return this.create('active', key, parent, labels);
  }
  async view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    this.calls.push(`view ${key}`);
    return this.create('view', key, parent, labels);
  }
  async mounts(key: string): Promise<Mount[]> {
    this.calls.push(`mounts ${key}`);
    const gate = this.gate;
    this.gate = undefined;
    if (gate) await gate;
    const info = this.get(key);
    if (info.kind === 'committed') throw new SnapshotError('InvalidArgument', `${key} is committed`);
    return this.mountsOf(info);
  }
  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    this.calls.push(`commit ${name} ${key}`);
    if (this.records.has(name)) throw new SnapshotError('AlreadyExists', `snapshot ${name} exists`);
    const active = this.get(key);
    if (active.kind !== 'active') throw new SnapshotError('FailedPrecondition', `${key} is not active`);
    this.records.delete(key);
    const t = this.now();
    this.records.set(name, { name, parent: active.parent, kind: 'committed', labels, created: t, updated: t });
  }
  async remove(key: string): Promise<void> {
    this.calls.push(`remove ${key}`);
    const fail = this.failRemove;
    this.failRemove = undefined;
    if (fail) throw fail;
    this.get(key);
    if ([...this.records.values()].some((i) => i.parent === key))
      throw new SnapshotError('FailedPrecondition', `cannot remove ${key}: has children`);
    this.records.delete(key);
  }
  async stat(key: string): Promise<SnapshotInfo> {
    return this.get(key);
  }
  async update(info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo> {
    this.updates.push({ info, paths });
    const cur = this.get(info.name);
    const next = { ...cur, labels: { ...info.labels }, updated: this.now() };
    this.records.set(info.name, next);
    return next;
  }
  async list(): Promise<SnapshotInfo[]> {
    return [...this.records.values()];
  }
  async usage(key: string): Promise<SnapshotUsage> {
    this.get(key);
    return { size: 9_007_199_254_740_993n, inodes: 42n };
  }
  async cleanup(): Promise<void> {
    this.calls.push('cleanup');
    throw new SnapshotError('Unimplemented', 'nothing to clean up');
  }
  async close(): Promise<void> {
    this.calls.push('close');
    this.closed = true;
  }
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapshotter-server-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('every method over the socket', () => {
  const api = new RecordsOnlySnapshotter();
  let server: SnapshotServer;
  let c: SnapshotsClient;
  beforeAll(async () => {
    server = await serve(api, `unix:${join(dir, 'run', 'methods.sock')}`);
    c = snapshotsClient(server.address);
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  it('binds the path given, making its folder, and answers there', () => {
    expect(server.address).toBe(join(dir, 'run', 'methods.sock'));
    expect(lstatSync(server.address).isSocket()).toBe(true);
  });

  it('Prepare, View and Mounts answer containerd.types.Mount lists', async () => {
    expect(await call(c, 'Prepare', { key: 'default/1/base', labels: { 'containerd.io/snapshot/a': '1' } })).toEqual({
      mounts: [{ type: 'ext4', source: '/dev/mapper/snap-14', target: '', options: [] }],
    });
    await call(c, 'Commit', { name: 'base', key: 'default/1/base', labels: { l: 'v' } });
    expect(await call(c, 'View', { key: 'v1', parent: 'base' })).toEqual({
      mounts: [{ type: 'ext4', source: '/dev/mapper/snap-2', target: '', options: ['ro'] }],
    });
    expect(await call(c, 'Mounts', { key: 'v1' })).toEqual({
      mounts: [{ type: 'ext4', source: '/dev/mapper/snap-2', target: '', options: ['ro'] }],
    });
  });

  it('Stat: kind by name, labels, and both times to the nanosecond', async () => {
    const want = api.records.get('base')!;
    const got = await call<{ info: WireInfo }>(c, 'Stat', { key: 'base' });
    expect({ ...got.info, created_at: undefined, updated_at: undefined }).toEqual({
      name: 'base',
      parent: '',
      kind: 'COMMITTED',
      labels: { l: 'v' },
      created_at: undefined,
      updated_at: undefined,
    });
    expect(nsOf(got.info.created_at)).toBe(want.created);
    expect(nsOf(got.info.updated_at)).toBe(want.updated);
    expect(want.created % 1_000_000n).not.toBe(0n); // sub-millisecond digits went over the wire
  });

  it('Update passes the name, labels and update_mask.paths; answers the new Info', async () => {
    const got = await call<{ info: WireInfo }>(c, 'Update', {
      info: { name: 'base', labels: { x: 'y' }, kind: 'UNKNOWN' },
      update_mask: { paths: ['labels.x'] },
    });
    expect(api.updates.at(-1)).toEqual({ info: { name: 'base', labels: { x: 'y' } }, paths: ['labels.x'] });
    expect(got.info.labels).toEqual({ x: 'y' });
    expect(nsOf(got.info.updated_at)).toBe(api.records.get('base')!.updated);
    await call(c, 'Update', { info: { name: 'base', labels: {} } });
    expect(api.updates.at(-1)).toEqual({ info: { name: 'base', labels: {} }, paths: [] });
  });

  it('Usage: int64s exactly, past 2^53', async () => {
    expect(await call(c, 'Usage', { key: 'base' })).toEqual({ size: '9007199254740993', inodes: '42' });
  });

  it('Commit and Remove answer Empty', async () => {
    await call(c, 'Prepare', { key: 'k2', parent: 'base' });
    expect(await call(c, 'Commit', { name: 'c2', key: 'k2' })).toEqual({});
    expect(await call(c, 'Remove', { key: 'c2' })).toEqual({});
    expect(api.records.has('c2')).toBe(false);
  });

  it("Cleanup calls the snapshotter's cleanup (Unimplemented goes through as 12)", async () => {
    expect(await refusal(call(c, 'Cleanup', {}))).toEqual({ code: 12, details: 'nothing to clean up' });
    expect(api.calls.at(-1)).toBe('cleanup');
  });

  it("the snapshotter's refusals arrive as containerd's codes with their messages", async () => {
    expect(await refusal(call(c, 'Prepare', { key: 'base' }))).toEqual({ code: 6, details: 'snapshot base exists' });
    expect(await refusal(call(c, 'Stat', { key: 'nope' }))).toEqual({ code: 5, details: 'snapshot nope not found' });
    expect((await refusal(call(c, 'Prepare', { key: 'k3', parent: 'v1' }))).code).toBe(3);
    expect((await refusal(call(c, 'Commit', { name: 'c3', key: 'v1' }))).code).toBe(9);
    expect(await refusal(call(c, 'Remove', { key: 'base' }))).toEqual({ code: 9, details: 'cannot remove base: has children' });
  });

  it('errno errors: EBUSY is FailedPrecondition; anything unexpected is Unknown with its message', async () => {
    api.failRemove = Object.assign(new Error('EBUSY: DM_DEV_REMOVE snap-1: Device or resource busy'), { code: 'EBUSY' });
    expect(await refusal(call(c, 'Remove', { key: 'v1' }))).toEqual({
      code: 9,
      details: 'EBUSY: DM_DEV_REMOVE snap-1: Device or resource busy',
    });
    api.failRemove = new TypeError('something broke');
    expect(await refusal(call(c, 'Remove', { key: 'v1' }))).toEqual({ code: 2, details: 'something broke' });
  });

  it('an empty key or name is InvalidArgument, and the snapshotter never sees it', async () => {
    const before = api.calls.length;
    for (const [method, req] of [
      ['Prepare', { key: '' }],
      ['View', { key: '', parent: 'base' }],
      ['Mounts', {}],
      ['Remove', { key: '' }],
      ['Stat', {}],
      ['Usage', {}],
      ['Commit', { name: '', key: 'k' }],
      ['Commit', { name: 'n', key: '' }],
      ['Update', { info: { name: '' } }],
      ['Update', {}],
    ] as const) {
      expect((await refusal(call(c, method, req))).code, `${method} ${JSON.stringify(req)}`).toBe(3);
    }
    expect(api.calls.length).toBe(before);
  });
});

describe('List', () => {
  const api = new RecordsOnlySnapshotter();
  let server: SnapshotServer;
  let c: SnapshotsClient;
  beforeAll(async () => {
    server = await serve(api, join(dir, 'list.sock'));
    c = snapshotsClient(server.address);
  });
  afterAll(async () => {
    c.close();
    await server.close();
  });

  it('nothing to list: the stream ends with no message', async () => {
    expect(await listBatches(c)).toEqual([]);
  });

  it(`streams 250 snapshots as ${LIST_BATCH}, ${LIST_BATCH}, 50, in the snapshotter's order`, async () => {
    await api.prepare('root-work', '', {});
    await api.commit('root', 'root-work', {});
    for (let i = 0; i < 249; i++) await api.view(`view-${String(i).padStart(3, '0')}`, 'root', { n: String(i % 3) });
    const batches = await listBatches(c);
    expect(batches.map((b) => b.length)).toEqual([100, 100, 50]);
    expect(batches.flat().map((i) => i.name)).toEqual([...api.records.keys()]);
    expect(batches[0]![0]).toMatchObject({ name: 'root', kind: 'COMMITTED', parent: '' });
    expect(batches[0]![1]).toMatchObject({ name: 'view-000', kind: 'VIEW', parent: 'root', labels: { n: '0' } });
  });

  it('filters before batching', async () => {
    const byLabel = await listBatches(c, ['labels.n==1']);
    expect(byLabel.map((b) => b.length)).toEqual([83]);
    const either = await listBatches(c, ['kind==committed', 'name~=^view-00[0-4]$']);
    expect(either.flat().map((i) => i.name)).toEqual(['root', 'view-000', 'view-001', 'view-002', 'view-003', 'view-004']);
    expect(await listBatches(c, ['kind==active'])).toEqual([]);
  });

  it('a bad filter is InvalidArgument', async () => {
    const err = await listBatches(c, ['name=root']).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(3);
    expect(err?.details).toMatch(/unsupported operator =/);
  });
});

describe('the socket', () => {
  it('replaces a stale socket file nobody listens on', async () => {
    const path = join(dir, 'stale.sock');
    // A server killed without closing leaves its socket file behind.
    const r = spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    expect(r.signal).toBe('SIGKILL');
    expect(lstatSync(path).isSocket()).toBe(true);
    const api = new RecordsOnlySnapshotter();
    const server = await serve(api, path);
    const c = snapshotsClient(path);
    try {
      await call(c, 'Prepare', { key: 'a' });
    } finally {
      c.close();
      await server.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a socket another server listens on (EADDRINUSE) and leaves it alone', async () => {
    const path = join(dir, 'live.sock');
    const other = createServer();
    await new Promise<void>((done) => other.listen(path, done));
    try {
      const err = await serve(new RecordsOnlySnapshotter(), path).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SocketAddressError);
      expect((err as SocketAddressError).code).toBe('EADDRINUSE');
      expect(lstatSync(path).isSocket()).toBe(true);
    } finally {
      await new Promise((done) => other.close(done));
    }
  });

  it('refuses a path that is not a socket (EEXIST) and one too long for sun_path (ENAMETOOLONG)', async () => {
    const file = join(dir, 'regular');
    writeFileSync(file, 'keep me');
    await expect(serve(new RecordsOnlySnapshotter(), file)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(existsSync(file)).toBe(true);
    await expect(serve(new RecordsOnlySnapshotter(), join(dir, 'x'.repeat(120)))).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
  });
});

describe('close', () => {
  let server: SnapshotServer | undefined;
  afterEach(async () => {
    await server?.close();
  });

  it('lets a call in flight finish, then closes the snapshotter and removes the socket', async () => {
    const api = new RecordsOnlySnapshotter();
    server = await serve(api, join(dir, 'drain.sock'));
    const c = snapshotsClient(server.address);
    await call(c, 'Prepare', { key: 'slow' });
    let open!: () => void;
    api.gate = new Promise((done) => {
      open = done;
    });
    const slow = call(c, 'Mounts', { key: 'slow' });
    while (api.calls.at(-1) !== 'mounts slow') await new Promise((r) => setTimeout(r, 5));

    let closed = false;
    const closing = server.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(false);
    expect(api.closed).toBe(false);
    // A new connection is not taken while draining.
    const late = snapshotsClient(server.address);
    const lateErr = await refusal(call(late, 'Stat', { key: 'slow' }));
    expect(lateErr.code).toBe(grpc.status.UNAVAILABLE);
    late.close();

    open();
    expect(await slow).toEqual({ mounts: [{ type: 'ext4', source: '/dev/mapper/snap-4', target: '', options: [] }] });
    await closing;
    expect(api.calls.slice(-2)).toEqual(['mounts slow', 'close']);
    expect(existsSync(join(dir, 'drain.sock'))).toBe(false);
    // Idempotent: a second close neither waits nor closes the snapshotter again.
    await server.close();
    expect(api.calls.filter((x) => x === 'close')).toHaveLength(1);
    c.close();
    server = undefined;
  });
});
