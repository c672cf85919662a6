// /dev/mapper without udev (a temp devDir, mknod replaced since unit tests are not root), the udev
// flags against the captures, and waiting for udev's node where it runs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MapperNodes, type MakeNode } from '../../src/dm/nodes.js';
import { detectUdev, udevEventNr } from '../../src/dm/udev.js';
import { recordsOf, type GoldenBufRecord } from '../support/golden.js';
import { MemoryNodes, ReplayTransport, replayDeviceMapper } from '../support/replay.js';
import { deviceName } from '../../src/dm/names.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dm-nodes-'));
  dirs.push(d);
  return d;
};

// Stands in for mknod: a file holding "block maj:min mode".
const fakeMknod: MakeNode = (path, spec) => writeFileSync(path, `${spec.type} ${spec.major}:${spec.minor} ${spec.mode.toString(8)}`);

describe('MapperNodes', () => {
  it('adds, renames, lists and removes <devDir>/mapper/<name>', () => {
    const devDir = tmp();
    const nodes = new MapperNodes(devDir, fakeMknod);
    nodes.add('lin0', { major: 254, minor: 0 });
    expect(readFileSync(join(devDir, 'mapper', 'lin0'), 'utf8')).toBe('block 254:0 600');
    mkdirSync(join(devDir, 'mapper'), { recursive: true });
    writeFileSync(join(devDir, 'mapper', 'control'), '');
    expect(nodes.list()).toEqual(['lin0']);
    nodes.rename('lin0', 'lin1');
    expect(nodes.exists('lin0')).toBe(false);
    expect(nodes.exists('lin1')).toBe(true);
    nodes.rename('gone', 'lin2', { major: 254, minor: 2 });
    expect(readFileSync(join(devDir, 'mapper', 'lin2'), 'utf8')).toBe('block 254:2 600');
    nodes.remove('lin1');
    nodes.remove('never-there');
    expect(nodes.list().sort()).toEqual(['lin2']);
  });
  it('lists nothing when the folder does not exist', () => {
    expect(new MapperNodes(join(tmp(), 'nope'), fakeMknod).list()).toEqual([]);
  });
});

describe('udev flags in event_nr', () => {
  const sent = (n: number, req: string): number[] =>
    recordsOf(n)
      .filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === req)
      .map((r) => Number(r.dm_before?.event_nr));
  it('without udev: as libdevmapper with DM_DISABLE_UDEV=1 (captured createLin0, removeSnap1, renameLin0)', () => {
    const off = { running: false, waitMs: 0 };
    expect(udevEventNr(off, 'create')).toBe(sent(19, 'DM_DEV_CREATE')[0]);
    expect(udevEventNr(off, 'resume')).toBe(sent(19, 'DM_DEV_SUSPEND')[0]);
    expect(udevEventNr(off, 'remove')).toBe(sent(88, 'DM_DEV_REMOVE')[0]);
    expect(udevEventNr(off, 'rename')).toBe(sent(53, 'DM_DEV_RENAME')[0]);
    expect(udevEventNr(off, 'create')).toBe(0x30000);
    expect(udevEventNr(off, 'resume')).toBe(0x430000);
  });
  it('with udev: as dmsetup --noudevsync (captured noUdevSyncCreate, noUdevSyncRename, noUdevSyncRemove)', () => {
    const on = { running: true, waitMs: 0 };
    expect(udevEventNr(on, 'create')).toBe(sent(97, 'DM_DEV_CREATE')[0]);
    expect(udevEventNr(on, 'resume')).toBe(sent(97, 'DM_DEV_SUSPEND')[0]);
    expect(udevEventNr(on, 'rename')).toBe(sent(100, 'DM_DEV_RENAME')[0]);
    expect(udevEventNr(on, 'remove')).toBe(sent(101, 'DM_DEV_REMOVE')[0]);
    expect(udevEventNr(on, 'resume', 0x0010)).toBe(0x700000);
  });
  it('detects udev by its control socket, only for the real /dev', () => {
    const d = tmp();
    const sock = join(d, 'control');
    expect(detectUdev('auto', '/dev', sock)).toBe(false);
    writeFileSync(sock, '');
    expect(detectUdev('auto', '/dev', sock)).toBe(true);
    expect(detectUdev('auto', '/dev/', sock)).toBe(true);
    expect(detectUdev('auto', d, sock)).toBe(false);
    expect(detectUdev('off', '/dev', sock)).toBe(false);
    expect(detectUdev('on', '/dev', join(d, 'none'))).toBe(true);
  });
});

describe('where udev runs', () => {
  it('waits for udev to make the node instead of racing it (captured noUdevSyncResume: resume with DM_UEVENT_GENERATED_FLAG)', async () => {
    const nodes = new MemoryNodes();
    const s = replayDeviceMapper(ReplayTransport.of(99), { udev: 'on', udevWaitMs: 2000, nodes });
    // "udev" makes its node (a symlink in real life) 20 ms after the uevent.
    setTimeout(() => nodes.nodes.set('lin0', { major: 254, minor: 0 }), 20);
    await s.dm.resume({ name: deviceName('lin0') });
    expect(nodes.ops).toEqual([]); // we did not touch it
    expect(nodes.exists('lin0')).toBe(true);
    s.finish();
  });
  it('makes the node itself when udev does not within the bound', async () => {
    const nodes = new MemoryNodes();
    const s = replayDeviceMapper(ReplayTransport.of(99), { udev: 'on', udevWaitMs: 10, nodes });
    await s.dm.resume({ name: deviceName('lin0') });
    expect(nodes.ops).toEqual(['add lin0 254:0']);
    s.finish();
  });
});
