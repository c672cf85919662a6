// kill -9 of the snapshotter at every step of its calls: a child runs the calls and dies at its
// 1st, 2nd, ... hook hit (the pool manager's points and the snapshotter's alike) until one run
// completes. After each kill the home is reopened by a snapshotter and checked: the snapshots are
// the template's plus the interrupted call's result exactly when the last `snapshotter:` point it
// passed says so (none passed: nothing happened); every record is ready; the active and view
// snapshots' dm devices are live and no committed one's; the pool's devices are exactly the
// records' (plus the bases), its thin ids exactly what the pool manager's metadata holds; no mount
// and no mount point is left. A last test fails for any `snapshotter:` point no run killed.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import { RecordStore } from '../../src/snapshotter/records.js';
import { CRASH_POINT_NAMES, CRASH_POINTS, type CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { mountTable } from '../../src/thin/mount.js';
import { activeSnapDevices, mountAt, removeSnapHome, SNAP_OPTIONS, snapHome, tree, umount } from './snapshotter-support.js';
import { parseSnapEvents, type SnapChildSpec, type SnapEvent, type SnapOp } from './snapshotter-crash-ops.js';
import { requireKernelTier, sweep, thinIdsOf } from './thin-support.js';

requireKernelTier();

interface Snap {
  kind: string;
  parent: string;
}
type Model = Map<string, Snap>;

/** The template: c1 (committed, with a file), a1 (active child of c1), p1 (active, parentless), r1 (committed child of c1). */
function templateModel(): Model {
  return new Map([
    ['c1', { kind: 'committed', parent: '' }],
    ['a1', { kind: 'active', parent: 'c1' }],
    ['p1', { kind: 'active', parent: '' }],
    ['r1', { kind: 'committed', parent: 'c1' }],
  ]);
}

interface Scenario {
  name: string;
  /** A new empty home (the child makes pool and base), else a copy of the template. */
  fresh?: boolean;
  ops: SnapOp[];
  /** Hits count from this call on; -1 from open. */
  countFrom?: number;
  countAfter?: CrashPointName;
  /** Before the child: make the home hold something for open to reconcile. */
  before?: (home: string) => Promise<void>;
  /** The model once the last call is done. */
  done: (m: Model) => void;
  /** What else must hold when the call is done (after) or not (before). */
  check?: (snap: Snapshotter, done: boolean) => Promise<void>;
}

const SCENARIOS: Scenario[] = [
  // Counted from the pool manager's base on: its own set-up is killed by thin-crash.test.ts.
  { name: 'base set-up', fresh: true, ops: [], countFrom: -1, countAfter: 'base:initialized', done: () => undefined },
  {
    name: 'prepare without parent',
    ops: [{ op: 'prepare', key: 'ns/1/n', parent: '' }],
    done: (m) => m.set('ns/1/n', { kind: 'active', parent: '' }),
  },
  {
    name: 'prepare with parent',
    ops: [{ op: 'prepare', key: 'ns/2/n', parent: 'c1' }],
    done: (m) => m.set('ns/2/n', { kind: 'active', parent: 'c1' }),
    check: async (snap, done) => {
      if (!done) return;
      // The child sees its parent's file.
      const dir = mkdtempSync(join(tmpdir(), 'dmtest-snapcrash-mnt-'));
      mountAt(await snap.mounts('ns/2/n'), dir);
      try {
        expect(tree(dir)).toEqual(['c1.txt=c1']);
      } finally {
        umount(dir);
      }
    },
  },
  { name: 'view', ops: [{ op: 'view', key: 'ns/3/v', parent: 'c1' }], done: (m) => m.set('ns/3/v', { kind: 'view', parent: 'c1' }) },
  {
    name: 'commit',
    ops: [{ op: 'commit', name: 'p1c', key: 'p1' }],
    done: (m) => {
      m.delete('p1');
      m.set('p1c', { kind: 'committed', parent: '' });
    },
  },
  { name: 'remove an active snapshot', ops: [{ op: 'remove', key: 'a1' }], done: (m) => m.delete('a1') },
  { name: 'remove a committed snapshot', ops: [{ op: 'remove', key: 'r1' }], done: (m) => m.delete('r1') },
  {
    name: 'update',
    ops: [{ op: 'update', key: 'a1' }],
    done: () => undefined,
    check: async (snap, done) => {
      expect((await snap.stat('a1')).labels['updated']).toBe(done ? 'yes' : undefined);
    },
  },
  {
    name: 'a device without a record',
    ops: [],
    countFrom: -1,
    before: async (home) => {
      const set = await DeviceSet.open(home, SNAP_OPTIONS);
      await set.addDevice('snap-900', 'snap-base');
      await set.close();
    },
    done: () => undefined,
  },
];

/** A crash in the middle of these, then children killed in turn while recovering it. */
const RECOVERY: { scenario: string; at: CrashPointName }[] = [
  { scenario: 'prepare with parent', at: 'snapshotter:prepare-activated' },
  { scenario: 'remove an active snapshot', at: 'snapshotter:remove-marked' },
];

const kills: CrashPointName[] = [];
let bundle = '';
let bundleDir = '';
let template = '';

interface ChildRun {
  killed: boolean;
  point?: CrashPointName;
  events: SnapEvent[];
}

function runChild(home: string, spec: Omit<SnapChildSpec, 'home' | 'options' | 'log'>): ChildRun {
  const logDir = mkdtempSync(join(tmpdir(), 'dmtest-snapcrashlog-'));
  try {
    const full: SnapChildSpec = { home, options: SNAP_OPTIONS, log: join(logDir, 'events'), ...spec };
    const r = spawnSync(process.execPath, [bundle, JSON.stringify(full)], { encoding: 'utf8', timeout: 120_000 });
    const events = parseSnapEvents(existsSync(full.log) ? readFileSync(full.log, 'utf8') : '');
    const done = events.some((e) => e.ev === 'done');
    if (!done && r.signal !== 'SIGKILL') {
      throw new Error(
        `the child failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}\nlast events: ${JSON.stringify(events.slice(-4))}`,
      );
    }
    if (done) {
      expect(r.status, r.stderr).toBe(0);
      return { killed: false, events };
    }
    const last = events.at(-1);
    if (last?.ev !== 'hit' || !last.counted) throw new Error(`killed, but not at a hook: ${JSON.stringify(events.slice(-3))}`);
    return { killed: true, point: last.point as CrashPointName, events };
  } finally {
    rmSync(logDir, { recursive: true, force: true });
  }
}

/** Whether the interrupted call took effect: the reconcile of the last `snapshotter:` point it passed (none: no). */
function callDone(events: SnapEvent[]): boolean {
  let begin = -1;
  events.forEach((e, i) => {
    if (e.ev === 'begin') begin = i;
  });
  if (begin < 0) return true;
  if (events.slice(begin).some((e) => e.ev === 'ack')) return true;
  const points = events
    .slice(begin)
    .filter((e): e is Extract<SnapEvent, { ev: 'hit' }> => e.ev === 'hit' && e.point.startsWith('snapshotter:'))
    .map((e) => e.point as CrashPointName);
  const last = points.at(-1);
  return last !== undefined && CRASH_POINTS[last].reconcile !== 'back';
}

/** Reopen and check the home against `model`; the snapshotter is closed again after. */
async function checkReopened(home: string, model: Model, sc: Scenario, done: boolean): Promise<void> {
  const snap = await Snapshotter.open(home, SNAP_OPTIONS);
  let poolName = '';
  try {
    poolName = snap.poolName;
    const listed = new Map((await snap.list()).map((i) => [i.name, { kind: i.kind, parent: i.parent }]));
    expect(new Map([...listed].sort()), sc.name).toEqual(new Map([...model].sort()));
    await sc.check?.(snap, done);
  } finally {
    await snap.close();
  }
  const records = RecordStore.open(join(home, 'snapshots')).readAll();
  expect(records.every((r) => r.state === 'ready')).toBe(true);
  const stem = poolName.replace(/-pool$/, '');
  expect(activeSnapDevices(poolName)).toEqual(
    records
      .filter((r) => r.kind !== 'committed')
      .map((r) => `${stem}-${r.id}`)
      .sort(),
  );
  const set = await DeviceSet.open(home, SNAP_OPTIONS);
  try {
    expect(set.list().sort()).toEqual(['snap-base', ...records.map((r) => r.id)].sort());
    expect(thinIdsOf(set.poolName)).toEqual(
      set
        .deviceRecords()
        .map((r) => r.deviceId as number)
        .sort((a, b) => a - b),
    );
    expect(set.deviceRecords().filter((r) => r.deleted)).toEqual([]);
  } finally {
    await set.close();
  }
  expect(existsSync(join(home, 'base-mount'))).toBe(false);
  expect(mountTable().filter((m) => m.mountPoint.startsWith(home))).toEqual([]);
}

/** Run k = 1, 2, ... of `sc` on a new copy of the template each, until a run completes. */
async function killEveryStep(sc: Scenario, recoverAt?: CrashPointName): Promise<void> {
  for (let k = 1; ; k++) {
    expect(k, 'the call does not end').toBeLessThan(200);
    const home = snapHome();
    try {
      if (!sc.fresh) execFileSync('cp', ['-a', '--sparse=always', `${template}/.`, home]);
      await sc.before?.(home);
      const child = runChild(home, {
        killAt: recoverAt ? 0 : k,
        ...(recoverAt ? { killAtPoint: recoverAt } : {}),
        countFrom: sc.countFrom ?? 0,
        ...(sc.countAfter ? { countAfter: sc.countAfter } : {}),
        ops: sc.ops,
      });
      if (child.killed) kills.push(child.point!);
      let done = callDone(child.events);
      if (recoverAt) {
        expect(child.point).toBe(recoverAt);
        // Open killed at its j-th hit, over and over, until one open completes.
        for (let j = 1; ; j++) {
          expect(j, 'recovery does not end').toBeLessThan(100);
          const rec = runChild(home, { killAt: j, countFrom: -1, ops: [] });
          if (!rec.killed) break;
          kills.push(rec.point!);
        }
        done = CRASH_POINTS[recoverAt].reconcile !== 'back';
      }
      const model = sc.fresh ? new Map() : templateModel();
      if (done) sc.done(model);
      await checkReopened(home, model, sc, done);
      if (!child.killed || recoverAt) return;
    } finally {
      await removeSnapHome(home);
    }
  }
}

describe('kill -9 of the snapshotter at every step', () => {
  beforeAll(async () => {
    await sweep();
    bundleDir = mkdtempSync(join(resolve(import.meta.dirname, '../../node_modules'), '.snap-crash-child-'));
    bundle = join(bundleDir, 'child.mjs');
    buildSync({
      entryPoints: [resolve(import.meta.dirname, 'snapshotter-crash-child.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: bundle,
      external: ['koffi'],
      logLevel: 'warning',
    });
    template = snapHome();
    const snap = await Snapshotter.open(template, SNAP_OPTIONS);
    const dir = `${template}-mnt`;
    mountAt(await snap.prepare('c1-key', '', {}), dir);
    execFileSync('sh', ['-c', 'printf c1 > "$1/c1.txt" && sync', 'sh', dir]);
    umount(dir);
    await snap.commit('c1', 'c1-key', {});
    await snap.prepare('a1', 'c1', {});
    await snap.prepare('p1', '', {});
    await snap.prepare('r1-key', 'c1', {});
    await snap.commit('r1', 'r1-key', {});
    await snap.close();
    await DeviceSet.shutdownHome(template, SNAP_OPTIONS);
  }, 300_000);

  afterAll(async () => {
    if (template) await removeSnapHome(template);
    if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
    const distinct = new Set(kills);
    console.log(`snapshotter crash: ${kills.length} kills, ${distinct.size} distinct points`);
  });

  for (const sc of SCENARIOS) test(sc.name, () => killEveryStep(sc), 900_000);

  test('a crash while recovering from a crash', async () => {
    for (const r of RECOVERY) await killEveryStep(SCENARIOS.find((s) => s.name === r.scenario)!, r.at);
  }, 900_000);

  test('every snapshotter: point was killed', () => {
    const killed = new Set(kills);
    expect(CRASH_POINT_NAMES.filter((p) => p.startsWith('snapshotter:') && !killed.has(p))).toEqual([]);
  });
});
