// kill -9 at every crash point of the pool manager, by construction: each scenario runs its
// operations in a child that dies at its 1st, 2nd, ... hook hit until one run completes, so every
// step the operations pass is killed, whatever the table (src/thin/crash-points.ts) holds; a last
// test fails for any point of CRASH_POINTS that no scenario killed. After each kill the home is
// reopened and checked (thin-crash-check.ts): the pool's thin ids (its own metadata, read through a
// metadata snapshot) equal our records, the transaction ids agree, no intent and nothing suspended
// remain, every acknowledged layer is there with its files intact, and the interrupted operation's
// outcome is what the table says.
//
// Speed: the child is bundled once (esbuild) instead of loading TypeScript per spawn; a scenario's
// runs follow each other on one copy of a template home (pool, formatted base, layers with files),
// so no kill pays for mkfs or a new pool. DEVMAPPER_CRASH_ONLY=name,name runs some tests only
// (scenario names, `recovery`, `random` or `random:<seed>`; for development: the coverage test
// then fails, naming what was not killed).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleChild, type ChildBundle } from './support/child-bundle.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CRASH_POINT_NAMES, CRASH_POINTS, type CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { type ChildSpec, type Op, parseEvents, prng } from './thin-crash-ops.js';
import { applyEvents, checkReopened, effectOf, emptyModel, type LayerModel, writeLayerFile } from './thin-crash-check.js';
import { newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const ONLY = process.env.DEVMAPPER_CRASH_ONLY?.split(',').filter((s) => s !== '');
const run = (name: string) => ONLY === undefined || ONLY.includes(name);

/** The template's layers: `a` (a snapshot of the base) and `c` (a snapshot of `a`), each with a file. */
function templateModel(): LayerModel {
  const model = emptyModel();
  model.present.set('a', ['a.bin']);
  model.present.set('c', ['a.bin', 'c.bin']);
  return model;
}

interface Scenario {
  name: string;
  /** Options beyond SMALL (runtime ones: one template fits every scenario). */
  options?: string[];
  /** A new empty home per run (the child makes the pool); else runs follow each other on one copy of the template. */
  fresh?: boolean;
  /** The operations of the k-th run (new names each run: a run starts from what the last one left). */
  ops: (k: number) => Op[];
  /** Hits count from this operation on (those before prepare); -1: from the child's open on. */
  countFrom?: number;
  /** The outcome of the scenario's last operation, where its kind alone does not say (effectOf). */
  effect?: (set: DeviceSet, k: number) => boolean;
  /** Kill only at the first hit of each of these points (one run each) instead of at every hit. */
  atPoints?: CrashPointName[];
  foreignAtPoolCreated?: boolean;
}

const MiB = 1n << 20n;

const SCENARIOS: Scenario[] = [
  // Every reopen makes the base again if a crash left none: its outcome is in every check (an
  // initialized base), whatever the point's reconcile did to the interrupted transaction.
  { name: 'pool init', fresh: true, ops: () => [], countFrom: -1 },
  { name: 'snapshot of an inactive origin', ops: (k) => [{ op: 'create', hash: `b${k}`, from: 'a' }] },
  { name: 'snapshot of the base', ops: (k) => [{ op: 'create', hash: `r${k}`, from: '' }] },
  {
    name: 'snapshot of an active origin',
    ops: (k) => [
      { op: 'activate', hash: 'a' },
      { op: 'create', hash: `s${k}`, from: 'a' },
    ],
    countFrom: 1,
  },
  {
    name: 'snapshot of a mounted origin',
    ops: (k) => [
      { op: 'mount', hash: 'c' },
      { op: 'create', hash: `m${k}`, from: 'c' },
    ],
    countFrom: 1,
  },
  {
    name: 'activate and mount',
    ops: () => [
      { op: 'activate', hash: 'c' },
      { op: 'deactivate', hash: 'c' },
      { op: 'mount', hash: 'a' },
      { op: 'unmount', hash: 'a' },
    ],
  },
  {
    name: 'delete with dm.blkdiscard',
    ops: (k) => [
      { op: 'create', hash: `d${k}`, from: 'a' },
      { op: 'delete', hash: `d${k}` },
    ],
    countFrom: 1,
  },
  {
    name: 'delete without dm.blkdiscard',
    options: ['dm.blkdiscard=false'],
    ops: (k) => [
      { op: 'create', hash: `e${k}`, from: 'c' },
      { op: 'delete', hash: `e${k}` },
    ],
    countFrom: 1,
  },
  {
    name: 'deferred delete retried on open',
    options: ['dm.use_deferred_deletion=true'],
    ops: (k) => [
      { op: 'create', hash: `f${k}`, from: 'a' },
      { op: 'mount', hash: `f${k}` },
      { op: 'delete', hash: `f${k}` },
      { op: 'unmount', hash: `f${k}` },
      { op: 'reopen' },
    ],
    countFrom: 4,
    effect: (set, k) => !set.deviceRecords().some((r) => r.hash === `f${k}`),
  },
  // Data and metadata: the metadata's steps are crash points too. Only the data size is the
  // operation's outcome (effectOf): dm-thin takes a grown metadata device at any later resume.
  {
    name: 'resize',
    ops: (k) => [{ op: 'resize', bytes: String(256n * MiB + BigInt(k) * 64n * MiB), metadata: String(16n * MiB + BigInt(k) * 4n * MiB) }],
  },
  // Ids the pool holds and the metadata does not (another user of the pool, a lost folder): skipped, never deleted.
  {
    name: 'snapshot over a foreign thin id',
    ops: (k) => [{ op: 'foreign' }, { op: 'create', hash: `x${k}`, from: 'a' }],
    countFrom: 1,
    atPoints: ['snapshot:id-collision'],
  },
  {
    name: 'pool init over a foreign thin id',
    fresh: true,
    ops: () => [],
    countFrom: -1,
    foreignAtPoolCreated: true,
    atPoints: ['create:id-collision', 'create:intent-written'],
  },
];

/**
 * Crashes during recovery: these scenarios are killed at every hit (or at the points named), and
 * each crash is recovered by children killed in turn at their 1st, 2nd, ... hit. Pool init's
 * recoveries all pass the same steps (delete the unformatted base, make it again): two of its
 * points stand for the rest.
 */
const RECOVERY_FROM: { scenario: string; points?: CrashPointName[] }[] = [
  { scenario: 'pool init', points: ['create:message-sent', 'base:formatted'] },
  { scenario: 'snapshot of a mounted origin' },
  { scenario: 'delete with dm.blkdiscard' },
  { scenario: 'deferred delete retried on open' },
  { scenario: 'resize' },
];
/** Random schedules: seeds, children per seed, operations per child. */
const RANDOM_SEEDS = [11, 12, 13, 14, 15, 16, 17, 18];
const RANDOM_CHILDREN = 16;
const RANDOM_OPS = 6;

interface Kill {
  scenario: string;
  point: CrashPointName;
}
const kills: Kill[] = [];
/** Wall time per scenario (runs, checks, set-up of its home), and where it went. */
const spent = new Map<string, number>();
const phases = new Map<string, number>();
function timedSync<T>(phase: string, fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    phases.set(phase, (phases.get(phase) ?? 0) + performance.now() - t0);
  }
}
async function timedAsync<T>(phase: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    phases.set(phase, (phases.get(phase) ?? 0) + performance.now() - t0);
  }
}

let bundle = '';
let childBundle: ChildBundle | undefined;
let template = '';

/** A copy of the template (sparse files stay sparse), or a new empty folder. */
function homeFor(fresh: boolean): string {
  const home = newHome('crash');
  if (!fresh) timedSync('copy template', () => execFileSync('cp', ['-a', '--sparse=always', `${template}/.`, home]));
  return home;
}

async function removeHome(home: string): Promise<void> {
  await sweep();
  rmSync(home, { recursive: true, force: true });
  rmSync(`${home}-mnt`, { recursive: true, force: true });
}

interface ChildRun {
  killed: boolean;
  /** The point it died at. */
  point?: CrashPointName;
  /** The operation it died in (undefined: in its first open). */
  inFlight?: Op;
  events: ReturnType<typeof parseEvents>;
}

type RunSpec = Pick<ChildSpec, 'killAt' | 'killAtPoint' | 'countFrom' | 'ops' | 'random' | 'foreignAtPoolCreated'>;

function runChild(home: string, opts: string[], spec: RunSpec): ChildRun {
  const log = mkdtempSync(join(tmpdir(), 'dmtest-crashlog-'));
  try {
    const full: ChildSpec = { home, mnt: `${home}-mnt`, options: [...SMALL, ...opts], log: join(log, 'events'), ...spec };
    const r = timedSync('child', () => spawnSync(process.execPath, [bundle, JSON.stringify(full)], { encoding: 'utf8', timeout: 120_000 }));
    const events = parseEvents(readFileSync(full.log, 'utf8'));
    const done = events.some((e) => e.ev === 'done');
    if (!done && r.signal !== 'SIGKILL') {
      throw new Error(
        `the child failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}\nlast events: ${JSON.stringify(events.slice(-4))}`,
      );
    }
    if (!done) {
      const last = events.at(-1);
      if (last?.ev !== 'hit' || !last.counted) throw new Error(`killed, but not at a hook: ${JSON.stringify(events.slice(-3))}`);
      const begins = events.filter((e) => e.ev === 'begin');
      const acks = events.filter((e) => e.ev === 'ack');
      const inFlight = begins.length > acks.length ? begins.at(-1)?.op : undefined;
      return { killed: true, point: last.point as CrashPointName, inFlight, events };
    }
    expect(r.status, r.stderr).toBe(0);
    return { killed: false, events };
  } finally {
    rmSync(log, { recursive: true, force: true });
  }
}

/** The interrupted operation's outcome after reopen must be what the point's reconcile says. */
function checkEffect(set: DeviceSet, sc: Scenario, k: number, child: ChildRun): void {
  const point = child.point!;
  const ops = sc.ops(k);
  const inLast = child.inFlight === undefined ? ops.length === 0 : JSON.stringify(child.inFlight) === JSON.stringify(ops.at(-1));
  const effect = inLast && sc.effect ? sc.effect(set, k) : child.inFlight ? effectOf(set, child.inFlight) : undefined;
  if (effect === undefined) return;
  const { reconcile } = CRASH_POINTS[point];
  expect(
    effect,
    `${sc.name} killed at ${point} (reconcile: ${reconcile}): the operation's result ${effect ? 'exists' : 'is missing'}`,
  ).toBe(reconcile !== 'back');
}

/**
 * The k-th run of `sc` dies at its k-th hit (or at `atPoints[k-1]`), for k = 1, 2, ... until a run
 * completes; the runs follow each other on one home (each child opens what the last crash left:
 * reconcile after reconcile), or each on a new home (`fresh`). After each kill, with `recover`,
 * children recover the home, the j-th dying at its j-th hit, until one completes. Then the parent
 * reopens and checks, and leaves the pool active or shuts it down (the next child meets both).
 */
async function killEveryStep(sc: Scenario, label: string, o: { recover?: boolean; atPoints?: CrashPointName[] } = {}): Promise<void> {
  const t0 = performance.now();
  const opts = sc.options ?? [];
  let home = '';
  let model = emptyModel();
  try {
    for (let k = 1; ; k++) {
      if (o.atPoints && k > o.atPoints.length) return;
      if (!home) {
        home = homeFor(sc.fresh === true);
        model = sc.fresh ? emptyModel() : templateModel();
      }
      const point = o.atPoints?.[k - 1];
      const kill = point ? { killAt: 0, killAtPoint: point } : { killAt: k };
      const child = runChild(home, opts, {
        ...kill,
        countFrom: sc.countFrom ?? 0,
        ops: sc.ops(k),
        ...(sc.foreignAtPoolCreated ? { foreignAtPoolCreated: true } : {}),
      });
      applyEvents(model, child.events);
      if (point) expect(child.point, `${sc.name} never reached ${point}`).toBe(point);
      if (child.killed) kills.push({ scenario: label, point: child.point! });
      if (child.killed && o.recover) {
        for (let j = 1; ; j++) {
          expect(j, 'recovery does not end').toBeLessThan(100);
          const rec = runChild(home, opts, { killAt: j, countFrom: -1, ops: [] });
          applyEvents(model, rec.events);
          if (!rec.killed) break;
          kills.push({ scenario: label, point: rec.point! });
        }
      }
      const set = await timedAsync('check', () => checkReopened(home, [...SMALL, ...opts], model, !child.killed, timedAsync));
      if (child.killed) checkEffect(set, sc, k, child);
      else if (sc.effect) expect(sc.effect(set, k)).toBe(true);
      if (sc.fresh || !child.killed || k % 2 === 0) await timedAsync('shutdown', () => set.shutdown());
      else await set.close();
      if (sc.fresh) {
        await removeHome(home);
        home = '';
      }
      if (!child.killed) return;
    }
  } finally {
    if (home) await removeHome(home);
    spent.set(label, (spent.get(label) ?? 0) + performance.now() - t0);
  }
}

/**
 * A seeded random schedule on one home: each child runs random operations and dies at a random
 * hit, counted from its open (so it may die while recovering what the previous one left); the
 * parent reopens and checks after most kills, leaving the pool active or shutting it down.
 */
async function randomSchedule(seed: number): Promise<void> {
  const t0 = performance.now();
  const label = 'random schedules';
  const rand = prng(seed);
  const opts = seed % 2 === 0 ? ['dm.use_deferred_deletion=true'] : [];
  const home = homeFor(false);
  const model = templateModel();
  try {
    for (let i = 0; i < RANDOM_CHILDREN; i++) {
      const killAt = 1 + Math.floor(rand() * 10);
      const child = runChild(home, opts, {
        killAt,
        countFrom: -1,
        ops: [],
        random: { seed: seed * 1000 + i, count: RANDOM_OPS, prefix: `s${seed}c${i}n` },
      });
      applyEvents(model, child.events);
      if (child.killed) kills.push({ scenario: label, point: child.point! });
      const last = i === RANDOM_CHILDREN - 1;
      if (rand() < 0.5 || last) {
        const set = await timedAsync('check', () => checkReopened(home, [...SMALL, ...opts], model, last, timedAsync));
        if (rand() < 0.5 && !last) await set.close();
        else await timedAsync('shutdown', () => set.shutdown());
      }
    }
  } finally {
    await removeHome(home);
    spent.set(label, (spent.get(label) ?? 0) + performance.now() - t0);
  }
}

describe('kill -9 at every crash point', () => {
  const started = performance.now();
  beforeAll(async () => {
    await sweep();
    childBundle = bundleChild('thin-crash-child.ts', 'crash-child');
    bundle = childBundle.file;
    // The template: pool, formatted base, layers a and c with a file each, shut down.
    template = newHome('crash-template');
    const set = await DeviceSet.open(template, SMALL);
    await set.addDevice('a', '');
    await writeLayerFile(set, `${template}-mnt`, 'a', 'a.bin');
    await set.addDevice('c', 'a');
    await writeLayerFile(set, `${template}-mnt`, 'c', 'c.bin');
    await set.shutdown();
  }, 300_000);

  afterAll(async () => {
    if (template) await removeHome(template);
    childBundle?.remove();
    const s = (ms: number) => (ms / 1000).toFixed(1);
    const distinct = new Set(kills.map((k) => k.point));
    const total = [...spent.values()].reduce((a, b) => a + b, 0);
    const lines = [
      `crash: ${kills.length} kill points, ${distinct.size} distinct points; ${s(performance.now() - started)} s in all, ${kills.length ? s(total / kills.length) : '-'} s per kill point`,
    ];
    for (const [label, ms] of spent) {
      const n = kills.filter((k) => k.scenario === label).length;
      lines.push(`  ${label}: ${n} kill points in ${s(ms)} s`);
    }
    lines.push(`  time in: ${[...phases].map(([p, ms]) => `${p} ${s(ms)} s`).join(', ')}`);
    console.log(lines.join('\n'));
  });

  for (const sc of SCENARIOS) {
    test.runIf(run(sc.name))(sc.name, () => killEveryStep(sc, sc.name, sc.atPoints ? { atPoints: sc.atPoints } : {}), 900_000);
  }

  test.runIf(run('recovery'))(
    'a crash while recovering from a crash',
    async () => {
      for (const from of RECOVERY_FROM) {
        const sc = SCENARIOS.find((s) => s.name === from.scenario)!;
        await killEveryStep(sc, 'recovery', { recover: true, ...(from.points ? { atPoints: from.points } : {}) });
      }
    },
    900_000,
  );

  for (const seed of RANDOM_SEEDS) {
    test.runIf(run('random') || run(`random:${seed}`))(`random schedule, seed ${seed}`, () => randomSchedule(seed), 900_000);
  }

  test('every point of CRASH_POINTS was killed', () => {
    const killed = new Set(kills.map((k) => k.point));
    // The snapshotter's points are killed by its own crash test (snapshotter-crash.test.ts).
    expect(CRASH_POINT_NAMES.filter((p) => !killed.has(p) && !p.startsWith('snapshotter:'))).toEqual([]);
    expect(kills.length).toBeGreaterThanOrEqual(ONLY === undefined ? 200 : 0);
  });
});
