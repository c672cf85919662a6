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
import { join } from 'node:path';
import { bundleChild, type ChildBundle } from './support/child-bundle.js';
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
/** The snapshots a reopen must list, and the value a1's `updated` label must have. */
interface Model {
  snaps: Map<string, Snap>;
  updated?: string;
}

/** The template: c1 (committed, with a file), a1 (active child of c1), p1 (active, parentless), r1 (committed child of c1). */
function templateModel(): Model {
  return {
    snaps: new Map([
      ['c1', { kind: 'committed', parent: '' }],
      ['a1', { kind: 'active', parent: 'c1' }],
      ['p1', { kind: 'active', parent: '' }],
      ['r1', { kind: 'committed', parent: 'c1' }],
    ]),
  };
}

/** What a call that took effect did to the model. */
function apply(m: Model, op: SnapOp): void {
  switch (op.op) {
    case 'prepare':
    case 'view':
      m.snaps.set(op.key, { kind: op.op === 'view' ? 'view' : 'active', parent: op.parent });
      return;
    case 'commit': {
      const parent = m.snaps.get(op.key)?.parent ?? '';
      m.snaps.delete(op.key);
      m.snaps.set(op.name, { kind: 'committed', parent });
      return;
    }
    case 'remove':
      m.snaps.delete(op.key);
      return;
    case 'update':
      m.updated = op.value;
      return;
  }
}

interface Scenario {
  name: string;
  /** Each run on a new copy of a pool whose snapshotter base is not made yet (else: runs follow each other on one copy of the template). */
  fresh?: boolean;
  /** The calls of the k-th run (new names each run: a run starts from what the last one left). */
  ops: (k: number) => SnapOp[];
  /** Hits count from this call on; -1 from open. */
  countFrom?: number;
  /**
   * Only hits of these points count (default: every hit). The pool manager's own steps are killed
   * one by one by thin-crash.test.ts; the calls here that pass the same steps as another scenario
   * are killed at the snapshotter's points and a few of the pool's.
   */
  only?: string[];
  /** Before the k-th child: make the home hold something for open to reconcile. */
  before?: (home: string, k: number) => Promise<void>;
  /** What else must hold once the runs are over. */
  finally?: (snap: Snapshotter) => Promise<void>;
}

const SCENARIOS: Scenario[] = [
  // From open on, over a pool the pool manager already made (its own set-up: thin-crash.test.ts).
  {
    name: 'base set-up',
    fresh: true,
    ops: () => [],
    countFrom: -1,
    only: ['snapshotter:', 'snapshot:message-sent', 'snapshot:txid-set', 'activate:loaded'],
  },
  { name: 'prepare without parent', ops: (k) => [{ op: 'prepare', key: `np/${k}`, parent: '' }] },
  {
    name: 'prepare with parent',
    ops: (k) => [{ op: 'prepare', key: `wp/${k}`, parent: 'c1' }],
    finally: async (snap) => {
      // A child made after all those crashes sees its parent's file.
      const dir = mkdtempSync(join(tmpdir(), 'dmtest-snapcrash-mnt-'));
      mountAt(await snap.prepare('wp/last', 'c1', {}), dir);
      try {
        expect(tree(dir)).toEqual(['c1.txt=c1']);
      } finally {
        umount(dir);
      }
      await snap.remove('wp/last');
    },
  },
  { name: 'view', ops: (k) => [{ op: 'view', key: `v/${k}`, parent: 'c1' }], only: ['snapshotter:', 'snapshot:txid-set'] },
  {
    name: 'commit',
    ops: (k) => [
      { op: 'prepare', key: `cp/${k}`, parent: '' },
      { op: 'commit', name: `cc/${k}`, key: `cp/${k}` },
    ],
    countFrom: 1,
  },
  {
    name: 'remove an active snapshot',
    ops: (k) => [
      { op: 'prepare', key: `ra/${k}`, parent: 'c1' },
      { op: 'remove', key: `ra/${k}` },
    ],
    countFrom: 1,
  },
  {
    name: 'remove a committed snapshot',
    ops: (k) => [
      { op: 'prepare', key: `rk/${k}`, parent: 'c1' },
      { op: 'commit', name: `rc/${k}`, key: `rk/${k}` },
      { op: 'remove', key: `rc/${k}` },
    ],
    countFrom: 2,
    only: ['snapshotter:', 'delete:discarded'],
  },
  { name: 'update', ops: (k) => [{ op: 'update', key: 'a1', value: String(k) }], only: ['snapshotter:'] },
  {
    name: 'a device without a record',
    ops: () => [],
    countFrom: -1,
    only: ['snapshotter:', 'delete:intent-written'],
    before: async (home, k) => {
      const set = await DeviceSet.open(home, SNAP_OPTIONS);
      await set.addDevice(`snap-${900 + k}`, 'snap-base');
      await set.close();
    },
  },
];

/** A crash in the middle of these, then children killed in turn while recovering it. */
const RECOVERY: { scenario: string; at: CrashPointName }[] = [
  { scenario: 'prepare with parent', at: 'snapshotter:prepare-activated' },
  { scenario: 'remove an active snapshot', at: 'snapshotter:remove-marked' },
];

/**
 * Recovering, the snapshotter's own points: every child starts from what the last one left, so a
 * kill inside the pool's delete (its reconcile finishes it, thin-crash.test.ts) would leave the
 * next child nothing to do and the step after the delete never killed.
 */
const RECOVERY_ONLY = ['snapshotter:'];

const kills: CrashPointName[] = [];
let bundle = '';
let childBundle: ChildBundle | undefined;
let template = '';
let poolTemplate = '';

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

/** Apply what the child's log says took effect: answered calls, and the interrupted one as its last point says. */
function applyEvents(m: Model, events: SnapEvent[]): void {
  for (const e of events) if (e.ev === 'ack') apply(m, e.op);
  const begun = events.filter((e) => e.ev === 'begin');
  const acked = events.filter((e) => e.ev === 'ack');
  const last = begun.at(-1);
  if (begun.length > acked.length && last?.ev === 'begin' && callDone(events)) apply(m, last.op);
}

const spent = new Map<string, number>();
async function timed<T>(phase: string, fn: () => Promise<T> | T): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    spent.set(phase, (spent.get(phase) ?? 0) + performance.now() - t0);
  }
}

/**
 * Reopen and check the home against `model`: the snapshots listed, every record ready, live dm
 * devices exactly the active and view ones', the pool's devices and thin ids exactly the records'.
 * Returns the snapshotter, open.
 */
async function checkReopened(home: string, model: Model): Promise<Snapshotter> {
  const snap = await Snapshotter.open(home, SNAP_OPTIONS);
  try {
    const listed = new Map((await snap.list()).map((i) => [i.name, { kind: i.kind, parent: i.parent }]));
    expect(new Map([...listed].sort())).toEqual(new Map([...model.snaps].sort()));
    if (model.snaps.has('a1')) expect((await snap.stat('a1')).labels['updated']).toBe(model.updated);
    const records = RecordStore.open(join(home, 'snapshots')).readAll();
    expect(records.every((r) => r.state === 'ready')).toBe(true);
    const stem = snap.poolName.replace(/-pool$/, '');
    const live = records.filter((r) => r.kind !== 'committed').map((r) => `${stem}-${r.id}`);
    expect(activeSnapDevices(snap.poolName)).toEqual(live.sort());
    const set = snap.deviceSet;
    expect(set.list().sort()).toEqual(['snap-base', ...records.map((r) => r.id)].sort());
    expect(thinIdsOf(set.poolName)).toEqual(
      set
        .deviceRecords()
        .map((r) => r.deviceId as number)
        .sort((a, b) => a - b),
    );
    expect(set.deviceRecords().filter((r) => r.deleted)).toEqual([]);
    expect(existsSync(join(home, 'base-mount'))).toBe(false);
    expect(mountTable().filter((m) => m.mountPoint.startsWith(home))).toEqual([]);
    return snap;
  } catch (e) {
    await snap.close();
    throw e;
  }
}

/** A new home: a copy of the template, or (fresh) of the pool without the snapshotter's base. */
function homeFor(fresh: boolean): string {
  const home = snapHome();
  execFileSync('cp', ['-a', '--sparse=always', `${fresh ? poolTemplate : template}/.`, home]);
  return home;
}

/**
 * The k-th run of `sc` dies at its k-th hit (or, recovering, at `recoverAt` and then children die
 * at their 1st, 2nd, ... hit of open until one completes), for k = 1, 2, ... until a run completes.
 */
async function killEveryStep(sc: Scenario, recoverAt?: CrashPointName): Promise<void> {
  let home = '';
  let model: Model = templateModel();
  try {
    for (let k = 1; ; k++) {
      expect(k, 'the call does not end').toBeLessThan(200);
      if (!home) {
        home = await timed('copy', () => homeFor(sc.fresh === true));
        model = sc.fresh ? { snaps: new Map() } : templateModel();
      }
      await sc.before?.(home, k);
      const child = await timed('child', () =>
        runChild(home, {
          killAt: recoverAt ? 0 : k,
          ...(recoverAt ? { killAtPoint: recoverAt } : {}),
          countFrom: sc.countFrom ?? 0,
          ...(sc.only ? { only: sc.only } : {}),
          ops: sc.ops(k),
        }),
      );
      if (child.killed) kills.push(child.point!);
      applyEvents(model, child.events);
      if (recoverAt) {
        expect(child.point).toBe(recoverAt);
        for (let j = 1; ; j++) {
          expect(j, 'recovery does not end').toBeLessThan(100);
          const rec = await timed('child', () => runChild(home, { killAt: j, countFrom: -1, only: RECOVERY_ONLY, ops: [] }));
          if (!rec.killed) break;
          kills.push(rec.point!);
        }
      }
      const snap = await timed('check', () => checkReopened(home, model));
      const last = !child.killed || recoverAt !== undefined;
      if (last) await sc.finally?.(snap);
      if (sc.fresh || last) {
        await timed('shutdown', async () => {
          await snap.deviceSet.shutdown();
          await snap.close();
          await sweep();
          rmSync(home, { recursive: true, force: true });
        });
        home = '';
      } else await snap.close();
      if (last) return;
    }
  } finally {
    if (home) await removeSnapHome(home);
  }
}

describe('kill -9 of the snapshotter at every step', () => {
  beforeAll(async () => {
    await sweep();
    childBundle = bundleChild('snapshotter-crash-child.ts', 'snap-crash-child');
    bundle = childBundle.file;
    // A pool with the pool manager's base only, and the template with snapshots on it.
    poolTemplate = snapHome();
    await (await DeviceSet.open(poolTemplate, SNAP_OPTIONS)).shutdown();
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
    if (poolTemplate) await removeSnapHome(poolTemplate);
    childBundle?.remove();
    const distinct = new Set(kills);
    const t = [...spent].map(([p, ms]) => `${p} ${(ms / 1000).toFixed(1)} s`).join(', ');
    const ours = [...distinct].filter((p) => p.startsWith('snapshotter:')).sort();
    console.log(`snapshotter crash: ${kills.length} kills, ${distinct.size} distinct points; time in ${t}\nkilled: ${ours.join(' ')}`);
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
