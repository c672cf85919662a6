// `devmapper snapshotter serve` as containerd runs it: the real binary on a unix socket, called over
// gRPC from this process (a grpc-js client of the same .proto), the snapshots mounted here with
// mount(8) as containerd would. Then SIGTERM: exit 0, the socket gone, the devices and the mount a
// "container" holds still there; a restart on the same home finds every snapshot; `pool shutdown`
// takes it all down.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WireInfo } from '../../src/snapshotter/wire.js';
import { call, list, refusal, type SnapshotsClient, snapshotsClient } from '../support/snapshots-client.js';
import { BIN, cli, cliOk, dmsetup, kernelHooks, oracleLs, RUN_DIR } from './support/env.js';

kernelHooks({ sweepEach: false });

const HOME = join(RUN_DIR, 'snap-home');
const SOCK = join(RUN_DIR, 'run', 'snap.sock');
const PREFIX = `dmtest-${process.pid}-snap`;
const OPTS = ['dm.loopdatasize=256M', 'dm.loopmetadatasize=16M', 'dm.basesize=64M', 'dm.min_free_space=0%', `dm.prefix=${PREFIX}`].flatMap(
  (o) => ['--storage-opt', o],
);

interface Server {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the server; resolves once it printed that it listens (the first start makes the pool). */
async function start(home = HOME, sock = SOCK): Promise<Server> {
  const child = spawn(BIN, ['snapshotter', 'serve', '--home', home, '--address', sock, ...OPTS], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    child.on('exit', (code, signal) => done({ code, signal }));
  });
  const server = { child, stdout: () => out, stderr: () => err, exited };
  const ready = new Promise<void>((done) => {
    child.stdout!.on('data', () => {
      if (out.includes('\n')) done();
    });
  });
  const outcome = await Promise.race([ready.then(() => 'ready' as const), exited.then(() => 'exited' as const)]);
  if (outcome === 'exited') throw new Error(`serve exited before listening: ${err}`);
  expect(out).toBe(`listening on ${sock}\n`);
  return server;
}

async function stop(server: Server): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  server.child.kill('SIGTERM');
  return server.exited;
}

interface MountMsg {
  type: string;
  source: string;
  target: string;
  options: string[];
}

const code = async (p: Promise<unknown>): Promise<number> => (await refusal(p)).code;

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const nsOfWire = (t: { seconds: string | number; nanos: number } | null) => (t ? BigInt(t.seconds) * 1_000_000_000n + BigInt(t.nanos) : 0n);

function mount(m: MountMsg, at: string): void {
  mkdirSync(at, { recursive: true });
  const opts = m.options.length ? ['-o', m.options.join(',')] : [];
  const r = spawnSync('mount', ['-t', m.type, ...opts, m.source, at], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount ${m.source} ${at}: ${r.stderr}`);
}

function umount(at: string): void {
  const r = spawnSync('umount', [at], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umount ${at}: ${r.stderr}`);
}

const mountedAt = (path: string): boolean =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
const ourDevices = () => [...oracleLs().keys()].filter((n) => n.startsWith(PREFIX));

let c: SnapshotsClient;
let server: Server;
const MNT = join(RUN_DIR, 'mnt');
/** The snapshot a running "container" keeps mounted across the restart. */
let workMount: MountMsg;

beforeAll(async () => {
  server = await start();
  c = snapshotsClient(SOCK);
}, 300_000);

afterAll(async () => {
  c?.close();
  if (server && server.child.exitCode === null && server.child.signalCode === null) await stop(server);
  for (const m of ['base', 'work', 'view']) if (mountedAt(join(MNT, m))) umount(join(MNT, m));
  if (existsSync(HOME)) cli(['pool', 'shutdown', '--home', HOME]);
});

describe('snapshotter serve', () => {
  test('prepare, mount, write, commit; a child and a view of it; list with filters; remove', async () => {
    const before = nowNs();
    const [base] = (
      await call<{ mounts: MountMsg[] }>(c, 'Prepare', { key: 'default/1/extract-base', labels: { 'containerd.io/snapshot/x': 'y' } })
    ).mounts;
    expect(base).toMatchObject({ type: 'ext4', target: '', options: [] });
    expect(base!.source).toMatch(/^\/dev\/mapper\//);
    expect(dmsetup(['info', base!.source.slice('/dev/mapper/'.length)]).status).toBe(0);
    mount(base!, join(MNT, 'base'));
    expect(readdirSync(join(MNT, 'base'))).toEqual([]); // no lost+found: the base is cleaned once
    writeFileSync(join(MNT, 'base', 'hello'), 'from the base layer\n');
    umount(join(MNT, 'base'));
    await call(c, 'Commit', { name: 'sha256:base', key: 'default/1/extract-base', labels: { 'containerd.io/snapshot/layer': '1' } });
    const stat = await call<{ info: WireInfo }>(c, 'Stat', { key: 'sha256:base' });
    expect(stat.info).toMatchObject({
      name: 'sha256:base',
      parent: '',
      kind: 'COMMITTED',
      labels: { 'containerd.io/snapshot/layer': '1' },
    });
    const created = nsOfWire(stat.info.created_at);
    expect(created >= before && created <= nowNs()).toBe(true);
    expect(await code(call(c, 'Mounts', { key: 'default/1/extract-base' }))).toBe(grpc.status.NOT_FOUND);

    [workMount] = (await call<{ mounts: MountMsg[] }>(c, 'Prepare', { key: 'default/2/work', parent: 'sha256:base' })).mounts as [MountMsg];
    mount(workMount, join(MNT, 'work'));
    expect(readFileSync(join(MNT, 'work', 'hello'), 'utf8')).toBe('from the base layer\n');
    writeFileSync(join(MNT, 'work', 'mine'), 'the container writes\n');

    const [view] = (await call<{ mounts: MountMsg[] }>(c, 'View', { key: 'default/3/view', parent: 'sha256:base' })).mounts;
    expect(view!.options).toContain('ro');
    expect(await call(c, 'Mounts', { key: 'default/3/view' })).toEqual({ mounts: [view] });
    mount(view!, join(MNT, 'view'));
    expect(readFileSync(join(MNT, 'view', 'hello'), 'utf8')).toBe('from the base layer\n');
    expect(() => writeFileSync(join(MNT, 'view', 'x'), 'no')).toThrow(/EROFS/);
    umount(join(MNT, 'view'));

    expect((await list(c, ['kind==committed'])).map((i) => i.name)).toEqual(['sha256:base']);
    expect((await list(c, ['parent==sha256:base'])).map((i) => i.name).sort()).toEqual(['default/2/work', 'default/3/view']);
    expect((await list(c, ['kind==view', 'labels."containerd.io/snapshot/layer"'])).map((i) => i.name).sort()).toEqual([
      'default/3/view',
      'sha256:base',
    ]);
    expect(await code(list(c, ['kind=view']))).toBe(grpc.status.INVALID_ARGUMENT);

    expect(await code(call(c, 'Remove', { key: 'sha256:base' }))).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await code(call(c, 'Prepare', { key: 'default/2/work', parent: 'sha256:base' }))).toBe(grpc.status.ALREADY_EXISTS);
    expect(await code(call(c, 'Prepare', { key: '' }))).toBe(grpc.status.INVALID_ARGUMENT);
    await call(c, 'Remove', { key: 'default/3/view' });
    expect(await code(call(c, 'Stat', { key: 'default/3/view' }))).toBe(grpc.status.NOT_FOUND);
    expect((await list(c)).map((i) => i.name).sort()).toEqual(['default/2/work', 'sha256:base']);
    const usage = await call<{ size: string; inodes: string }>(c, 'Usage', { key: 'default/2/work' });
    expect(BigInt(usage.size) > 0n).toBe(true);
  });

  test('SIGTERM: exit 0, the socket gone, devices and the mount in use kept; the home is taken until then', async () => {
    // A second server on the same home is refused while the first holds it.
    const second = cli(['snapshotter', 'serve', '--home', HOME, '--address', join(RUN_DIR, 'run', 'other.sock')]);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/^devmapper snapshotter: EWOULDBLOCK/);
    expect(existsSync(join(RUN_DIR, 'run', 'other.sock'))).toBe(false);

    const devices = ourDevices();
    expect(devices.length).toBeGreaterThan(1);
    c.close();
    const { code: exit, signal } = await stop(server);
    expect({ exit, signal, stderr: server.stderr() }).toEqual({ exit: 0, signal: null, stderr: expect.stringMatching(/SIGTERM/) });
    expect(server.stdout()).toBe(`listening on ${SOCK}\n`);
    expect(existsSync(SOCK)).toBe(false);
    expect(ourDevices()).toEqual(devices);
    expect(mountedAt(join(MNT, 'work'))).toBe(true);
    expect(readFileSync(join(MNT, 'work', 'mine'), 'utf8')).toBe('the container writes\n');
  }, 120_000);

  test('a restart on the same home serves every snapshot again; pool shutdown takes it all down', async () => {
    server = await start();
    c = snapshotsClient(SOCK);
    const infos = await list(c);
    expect(infos.map((i) => [i.name, i.kind, i.parent]).sort()).toEqual([
      ['default/2/work', 'ACTIVE', 'sha256:base'],
      ['sha256:base', 'COMMITTED', ''],
    ]);
    expect(await call(c, 'Mounts', { key: 'default/2/work' })).toEqual({ mounts: [workMount] });
    // Committed while the container still has it mounted, as containerd does at the end of an unpack.
    await call(c, 'Commit', { name: 'sha256:top', key: 'default/2/work' });
    expect((await call<{ info: WireInfo }>(c, 'Stat', { key: 'sha256:top' })).info).toMatchObject({
      kind: 'COMMITTED',
      parent: 'sha256:base',
    });
    umount(join(MNT, 'work'));
    await call(c, 'Remove', { key: 'sha256:top' });
    await call(c, 'Remove', { key: 'sha256:base' });
    expect(await list(c)).toEqual([]);
    c.close();
    expect((await stop(server)).code).toBe(0);

    cliOk(['pool', 'shutdown', '--home', HOME]);
    expect(ourDevices()).toEqual([]);
  }, 300_000);
});
