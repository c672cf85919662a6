// kill -9 at every crash point of the pool manager, by construction: each scenario runs its
// operations in a child that dies at its 1st, 2nd, ... hook hit until one run completes, so every
// step the operations pass is killed, whatever the table (src/thin/crash-points.ts) holds; a last
// test fails for any point of CRASH_POINTS that no scenario killed. After each kill the home is
// reopened and checked (thin-crash-check.ts): the pool's thin ids (thin_dump) equal the metadata's,
// the transaction ids agree, no intent and nothing suspended remain, every acknowledged layer is
// there with its files intact, and the interrupted operation's outcome is what the table says.
//
// Speed: the child is bundled once (esbuild) instead of loading TypeScript per spawn, and each
// scenario copies a template home (pool, formatted base, layers with files, shut down) instead of
// making a pool and running mkfs per kill. DEVMAPPER_CRASH_ONLY=name,name runs some scenarios only
// (for development: the coverage test then fails, naming what was not killed).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CRASH_POINT_NAMES, CRASH_POINTS, type CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { type ChildSpec, type Op, parseEvents, prng } from './thin-crash-ops.js';
import { applyEvents, checkReopened, effectOf, type LayerModel, writeLayerFile } from './thin-crash-check.js';
import { newHome, requireKernelTier, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const ONLY = process.env.DEVMAPPER_CRASH_ONLY?.split(',').filter((s) => s !== '');
const run = (name: string) => ONLY === undefined || ONLY.includes(name);

/** The template's layers: `a` (a snapshot of the base) and `c` (a snapshot of `a`), each with a file. */
function templateModel(): LayerModel {
  return {
    present: new Map([
      ['a', ['a.bin']],
      ['c', ['a.bin', 'c.bin']],
    ]),
    gone: new Set(),
    pendingCreate: new Map(),
    pendingDelete: new Set(),
  };
}

interface Scenario {
  name: string;
  /** Options beyond SMALL (runtime ones: a template fits every scenario). */
  options?: string[];
  /** 'none': a new home (the child makes the pool); 'layers': a copy of the template. */
  home: 'none' | 'layers';
  ops: Op[];
  /** Whether hits inside the child's first open are killed too. */
  countOpen?: boolean;
  /** The outcome of the whole scenario, for kills in its last op (or in its open if it has none). */
  effect?: (set: DeviceSet) => boolean;
}

const baseInitialized = (set: DeviceSet) => set.deviceRecords().find((r) => r.hash === '')?.initialized === true;

const SCENARIOS: Scenario[] = [
  { name: 'pool init', home: 'none', ops: [], countOpen: true, effect: baseInitialized },
  { name: 'snapshot of an inactive origin', home: 'layers', ops: [{ op: 'create', hash: 'b', from: 'a' }] },
  { name: 'snapshot of the base', home: 'layers', ops: [{ op: 'create', hash: 'b', from: '' }] },
  {
    name: 'snapshot of an active origin',
    home: 'layers',
    ops: [
      { op: 'activate', hash: 'a' },
      { op: 'create', hash: 'b', from: 'a' },
    ],
  },
  {
    name: 'snapshot of a mounted origin',
    home: 'layers',
    ops: [
      { op: 'mount', hash: 'a' },
      { op: 'create', hash: 'b', from: 'a' },
    ],
  },
  {
    name: 'activate and mount',
    home: 'layers',
    ops: [
      { op: 'activate', hash: 'c' },
      { op: 'deactivate', hash: 'c' },
      { op: 'mount', hash: 'c' },
      { op: 'unmount', hash: 'c' },
    ],
  },
  { name: 'delete with dm.blkdiscard', home: 'layers', ops: [{ op: 'delete', hash: 'a' }] },
  { name: 'delete without dm.blkdiscard', options: ['dm.blkdiscard=false'], home: 'layers', ops: [{ op: 'delete', hash: 'c' }] },
  {
    name: 'deferred delete retried on open',
    options: ['dm.use_deferred_deletion=true'],
    home: 'layers',
    ops: [{ op: 'mount', hash: 'a' }, { op: 'delete', hash: 'a' }, { op: 'unmount', hash: 'a' }, { op: 'reopen' }],
    effect: (set) => !set.deviceRecords().some((r) => r.hash === 'a'),
  },
  { name: 'resize', home: 'layers', ops: [{ op: 'resize', bytes: String(320n << 20n) }] },
];

/** The first kills of the recovery chains: a crash left by these scenarios is recovered by children killed in turn. */
const RECOVERY_FROM = ['pool init', 'snapshot of a mounted origin', 'delete with dm.blkdiscard', 'resize'];
/** Random schedules: seeds, children per seed, operations per child. */
const RANDOM_SEEDS = [11, 12, 13, 14, 15, 16];
const RANDOM_CHILDREN = 16;
const RANDOM_OPS = 6;

interface Kill {
  scenario: string;
  point: CrashPointName;
  ms: number;
}
const kills: Kill[] = [];
let bundle = '';
let bundleDir = '';
let template = '';
const started = Date.now();

/** A home for one run: a copy of the template (sparse files stay sparse) or a new folder. */
function homeFor(kind: 'none' | 'layers'): string {
  const home = newHome('crash');
  if (kind === 'layers') execFileSync('cp', ['-a', '--sparse=always', `${template}/.`, home]);
  return home;
}

function removeHome(home: string): void {
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

function runChild(home: string, opts: string[], spec: Pick<ChildSpec, 'killAt' | 'countOpen' | 'ops' | 'random'>): ChildRun {
  const log = mkdtempSync(join(tmpdir(), 'dmtest-crashlog-'));
  try {
    const full: ChildSpec = { home, mnt: `${home}-mnt`, options: [...SMALL, ...opts], log: join(log, 'events'), ...spec };
    const r = spawnSync(process.execPath, [bundle, JSON.stringify(full)], { encoding: 'utf8', timeout: 120_000 });
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

/** What the table says a kill at `point` leaves of its operation after reopen: there, or not. */
function expectedEffect(point: CrashPointName): boolean {
  return CRASH_POINTS[point].reconcile !== 'back';
}

function checkEffect(set: DeviceSet, sc: Scenario, child: ChildRun, point: CrashPointName): void {
  const last = sc.ops.at(-1);
  const inLast = child.inFlight === undefined ? sc.ops.length === 0 : child.inFlight === last;
  const effect = inLast && sc.effect ? sc.effect(set) : child.inFlight ? effectOf(set, child.inFlight) : undefined;
  if (effect !== undefined) {
    expect(effect, `${sc.name} killed at ${point} (reconcile: ${CRASH_POINTS[point].reconcile})`).toBe(expectedEffect(point));
  }
}

/** Run `sc` killed at its k-th hit, for k = 1, 2, ... until a run completes; check after each. */
async function killEveryStep(sc: Scenario): Promise<void> {
  const opts = sc.options ?? [];
  for (let k = 1; ; k++) {
    const t0 = Date.now();
    const home = homeFor(sc.home);
    try {
      const child = runChild(home, opts, { killAt: k, countOpen: sc.countOpen ?? false, ops: sc.ops });
      const model = sc.home === 'layers' ? templateModel() : emptyModel();
      applyEvents(model, child.events);
      const set = await checkReopened(home, [...SMALL, ...opts], model);
      if (child.killed) checkEffect(set, sc, child, child.point!);
      else if (sc.effect) expect(sc.effect(set)).toBe(true);
      await set.shutdown();
      if (!child.killed) return;
      kills.push({ scenario: sc.name, point: child.point!, ms: Date.now() - t0 });
    } finally {
      await sweep();
      removeHome(home);
    }
  }
}

function emptyModel(): LayerModel {
  return { present: new Map(), gone: new Set(), pendingCreate: new Map(), pendingDelete: new Set() };
}

/**
 * A crash during recovery from a crash: kill `sc` at its k-th hit, then let children recover the
 * home, the j-th killed at its j-th hit (counting from its open: reconcile, the base, deferred
 * deletes), until one completes; then the interrupted operation's outcome must still be the table's.
 */
async function killRecovery(sc: Scenario, k: number): Promise<boolean> {
  const opts = sc.options ?? [];
  const home = homeFor(sc.home);
  try {
    let t0 = Date.now();
    const first = runChild(home, opts, { killAt: k, countOpen: sc.countOpen ?? false, ops: sc.ops });
    if (!first.killed) return false;
    kills.push({ scenario: `${sc.name}, then recovery`, point: first.point!, ms: Date.now() - t0 });
    const model = sc.home === 'layers' ? templateModel() : emptyModel();
    applyEvents(model, first.events);
    for (let j = 1; j <= 64; j++) {
      t0 = Date.now();
      const rec = runChild(home, opts, { killAt: j, countOpen: true, ops: [] });
      applyEvents(model, rec.events);
      if (!rec.killed) break;
      kills.push({ scenario: `recovery after ${sc.name} @ ${first.point}`, point: rec.point!, ms: Date.now() - t0 });
    }
    const set = await checkReopened(home, [...SMALL, ...opts], model);
    checkEffect(set, sc, first, first.point!);
    await set.shutdown();
    return true;
  } finally {
    await sweep();
    removeHome(home);
  }
}

/**
 * A seeded random schedule on one home: each child runs random operations and dies at a random
 * hit (counting its open: it may die while recovering what the previous one left); the parent
 * reopens and checks after most kills, leaving the pool active or shutting it down.
 */
async function randomSchedule(seed: number): Promise<void> {
  const rand = prng(seed);
  const opts = seed % 2 === 0 ? ['dm.use_deferred_deletion=true'] : [];
  const home = homeFor('layers');
  const model = templateModel();
  try {
    for (let i = 0; i < RANDOM_CHILDREN; i++) {
      const t0 = Date.now();
      const killAt = 1 + Math.floor(rand() * 10);
      const child = runChild(home, opts, {
        killAt,
        countOpen: true,
        ops: [],
        random: { seed: seed * 1000 + i, count: RANDOM_OPS, prefix: `s${seed}c${i}n` },
      });
      applyEvents(model, child.events);
      if (rand() < 0.7 || i === RANDOM_CHILDREN - 1) {
        const set = await checkReopened(home, [...SMALL, ...opts], model);
        if (rand() < 0.5) set.close();
        else await set.shutdown();
      }
      if (child.killed) kills.push({ scenario: `random ${seed}`, point: child.point!, ms: Date.now() - t0 });
    }
  } finally {
    await sweep();
    removeHome(home);
  }
}

describe('kill -9 at every crash point', () => {
  beforeAll(async () => {
    await sweep();
    // One bundle per test file: a child then starts in well under a second. It lives under
    // node_modules so that koffi (external) resolves from it.
    bundleDir = mkdtempSync(join(resolve(import.meta.dirname, '../../node_modules'), '.crash-child-'));
    bundle = join(bundleDir, 'child.mjs');
    buildSync({
      entryPoints: [resolve(import.meta.dirname, 'thin-crash-child.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: bundle,
      external: ['koffi'],
      logLevel: 'warning',
    });
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
    await sweep();
    if (template) removeHome(template);
    if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
    const distinct = new Set(kills.map((k) => k.point));
    const ms = kills.reduce((s, k) => s + k.ms, 0);
    const per = kills.length ? (ms / kills.length / 1000).toFixed(2) : '-';
    console.log(
      `crash: ${kills.length} kill points, ${distinct.size} distinct points, ${((Date.now() - started) / 1000).toFixed(0)} s in all, ${per} s per kill point`,
    );
    const byScenario = new Map<string, { n: number; ms: number }>();
    for (const k of kills) {
      const key = k.scenario.replace(/ @ .*$/, '').replace(/^recovery after .*/, 'recovery');
      const e = byScenario.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += k.ms;
      byScenario.set(key, e);
    }
    console.log([...byScenario].map(([s, e]) => `  ${s}: ${e.n} kill points, ${(e.ms / e.n / 1000).toFixed(2)} s each`).join('\n'));
  });

  for (const sc of SCENARIOS) {
    test.runIf(run(sc.name))(sc.name, () => killEveryStep(sc), 900_000);
  }

  test.runIf(run('recovery'))(
    'a crash while recovering from a crash',
    async () => {
      for (const name of RECOVERY_FROM) {
        const sc = SCENARIOS.find((s) => s.name === name)!;
        for (let k = 1; await killRecovery(sc, k); k++);
      }
    },
    900_000,
  );

  for (const seed of RANDOM_SEEDS) {
    test.runIf(run('random'))(`random schedule, seed ${seed}`, () => randomSchedule(seed), 900_000);
  }

  test('every point of CRASH_POINTS was killed', () => {
    const killed = new Set(kills.map((k) => k.point));
    expect(CRASH_POINT_NAMES.filter((p) => !killed.has(p))).toEqual([]);
    expect(kills.length).toBeGreaterThanOrEqual(ONLY === undefined ? 200 : 0);
  });
});
