// Several processes at once against one pool home, for several rounds: library children
// (concurrency-child.ts, retrying while refused) and `devmapper layer` CLI processes (run again by
// this test while refused, as a user would). The owner lock must admit one process at a time
// (the children log their holds; no two overlap, and no library hold spans a successful CLI run),
// everyone else gets PoolLockedError / the CLI's EWOULDBLOCK line naming a live contender, and after
// every round the pool and the metadata agree exactly, with every reported success visible. One
// round SIGKILLs two holders mid-transaction; the processes after them reconcile.
import { spawn } from 'node:child_process';
import { buildSync } from 'esbuild';
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { CRASH_POINTS, type CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { BIN, cliOk } from './support/env.js';
import { dmsetup, newHome, requireKernelTier, sweep, thinDevicesOf } from './thin-support.js';

requireKernelTier();

const CHILD = resolve(import.meta.dirname, 'concurrency-child.ts');
const NODE_MODULES = resolve(import.meta.dirname, '../../node_modules');
const PREFIX = `dmtest-${process.pid}-conc`;
const OPTS = ['dm.loopdatasize=256M', 'dm.loopmetadatasize=16M', 'dm.basesize=64M', 'dm.min_free_space=0%', `dm.prefix=${PREFIX}`];
const LIBS_PER_ROUND = 2;
const CLIS_PER_ROUND = 2;
const CLI_ATTEMPTS = 10;
/** Process start-up in the guest is slow, and slower on a busy host: a round's own bound. */
const ROUND_MS = 400_000;
/** `devmapper layer: EWOULDBLOCK: <home>/lock is held by process N: ...` (docs/cli.md, exit 1). */
const CLI_LOCKED = /^devmapper layer: EWOULDBLOCK: \S+\/lock is held by process (\d+): /;

type Op = { op: 'add' | 'delete'; hash: string };
interface LibPlan {
  ops: Op[];
  killAt?: CrashPointName;
  holdUntil?: string;
}
interface LibReport {
  pid: number;
  results: (Op & { ok: boolean; error?: string })[];
  refusedBy: number[];
  problems: string[];
}
interface LibRun {
  plan: LibPlan;
  pid: number;
  exitAt: bigint;
  code: number | null;
  signal: NodeJS.Signals | null;
  report: LibReport | null;
  stderr: string;
}
interface CliRun {
  op: Op;
  pid: number;
  start: bigint;
  end: bigint;
  status: number | null;
  stderr: string;
}

const now = (): bigint => process.hrtime.bigint();
const T0 = Date.now();
/** CONC_DEBUG=<file>: each step of each round, with ms since start (vitest shows output only at the
 *  end; a file on the project's mount can be read from the host while the guest runs). */
const dbg = (m: string) => {
  if (process.env['CONC_DEBUG']) appendFileSync(process.env['CONC_DEBUG'], `[${Date.now() - T0}] ${m}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The child as one CommonJS file (koffi from node_modules): process start-up in the guest is
 *  slow, and a bundle starts in a fraction of the time tsx takes to load the sources. */
let bundle = '';

/** Starts a library child and resolves once it has loaded and waits for "go". */
async function startLib(home: string, log: string, plan: LibPlan): Promise<{ pid: number; go: () => void; done: Promise<LibRun> }> {
  const child = spawn(process.execPath, [bundle, home, log, JSON.stringify(plan)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_PATH: NODE_MODULES },
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const ready = new Promise<void>((res, rej) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('ready\n')) res();
    });
    child.on('exit', () => rej(new Error(`child exited before it was ready: ${err}`)));
  });
  const done = new Promise<LibRun>((res) => {
    child.on('exit', (code, signal) => {
      const exitAt = now();
      dbg(`lib ${child.pid} exit ${code ?? signal}: ${out.trim()} ${err.trim()}`);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      res({ plan, pid: child.pid ?? -1, exitAt, code, signal, report: line ? (JSON.parse(line) as LibReport) : null, stderr: err });
    });
  });
  await ready;
  return { pid: child.pid ?? -1, go: () => child.stdin.end('go\n'), done };
}

/** Until `pid` has logged that it holds the lock. */
async function waitForHold(log: string, pid: number): Promise<void> {
  while (!readFileSync(log, 'utf8').includes(`${pid} enter `)) await sleep(20);
}

function runCli(args: string[]): Promise<Omit<CliRun, 'op'>> {
  const start = now();
  const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((res) => {
    child.on('exit', (status) => res({ pid: child.pid ?? -1, start, end: now(), status, stderr }));
  });
}

/** One CLI op, run again after a short pause while the home is locked. Every run is returned. */
async function cliSlot(home: string, op: Op, release?: string): Promise<CliRun[]> {
  const args = op.op === 'add' ? ['layer', 'create', op.hash, '--home', home] : ['layer', 'rm', op.hash, '--home', home];
  const runs: CliRun[] = [];
  for (let i = 0; i < CLI_ATTEMPTS; i++) {
    const r = { op, ...(await runCli(args)) };
    dbg(`cli ${op.op} ${op.hash}: pid ${r.pid} status ${r.status} ${(Number(r.end - r.start) / 1e6).toFixed(0)} ms ${r.stderr.trim()}`);
    runs.push(r);
    if (release) writeFileSync(release, '');
    if (!(r.status === 1 && CLI_LOCKED.test(r.stderr))) break;
    await sleep(Math.floor(Math.random() * 150));
  }
  return runs;
}

/** The hold log as intervals [enter, leave]; a holder that was killed leaves at its exit. */
function holds(log: string, libs: LibRun[]): { pid: number; enter: bigint; leave: bigint }[] {
  const open = new Map<number, bigint>();
  const out: { pid: number; enter: bigint; leave: bigint }[] = [];
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (line === '') continue;
    const [pid, what, t] = line.split(' ') as [string, 'enter' | 'leave', string];
    if (what === 'enter') {
      expect(open.has(Number(pid)), `${pid} entered twice`).toBe(false);
      open.set(Number(pid), BigInt(t));
    } else {
      const enter = open.get(Number(pid));
      expect(enter, `${pid} left without entering`).toBeDefined();
      out.push({ pid: Number(pid), enter: enter!, leave: BigInt(t) });
      open.delete(Number(pid));
    }
  }
  for (const [pid, enter] of open) {
    const lib = libs.find((l) => l.pid === pid);
    expect(lib?.signal, `${pid} never left but was not killed`).toBe('SIGKILL');
    out.push({ pid, enter, leave: lib!.exitAt });
  }
  return out.sort((a, b) => (a.enter < b.enter ? -1 : 1));
}

describe('one pool home, many processes', () => {
  let home: string;
  let dm: DeviceMapper;
  /** Hashes every reported success (and every reconciled crash) says exist. */
  const present = new Set<string>();
  const stats = { rounds: 0, holds: 0, libRefusals: 0, cliRuns: 0, cliRefusals: 0, cliOk: 0, libOk: 0, killed: 0 };

  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
    home = newHome('conc');
    bundle = join(home, 'concurrency-child.cjs');
    // As scripts/build bundles the CLI: libc.ts's createRequire(import.meta.url) gets the bundle's URL.
    buildSync({
      entryPoints: [CHILD],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      outfile: bundle,
      external: ['koffi'],
      banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
      define: { 'import.meta.url': '__import_meta_url' },
      logLevel: 'warning',
    });
    dbg('init');
    cliOk(['pool', 'init', '--home', home, ...OPTS.flatMap((o) => ['--storage-opt', o])]);
  }, ROUND_MS);
  afterAll(async () => {
    dbg('afterAll');
    console.log(`concurrency: ${JSON.stringify(stats)}`);
    try {
      if (home && existsSync(join(home, 'metadata'))) await (await DeviceSet.open(home, OPTS)).shutdown();
    } finally {
      dm.close();
      await sweep();
      if (home) rmSync(home, { recursive: true, force: true });
    }
  });

  /** Pool and metadata agree exactly (every thin id the pool's metadata holds, transaction ids), no
   *  intent is left, and the user hashes are `present`. Opens the home itself, after the round. */
  async function checkPool(): Promise<void> {
    dbg('check: open');
    const set = await DeviceSet.open(home, OPTS);
    dbg('check: opened');
    try {
      const store = MetadataStore.open(join(home, 'metadata'));
      const state = store.readPoolState();
      expect(state).not.toBeNull();
      expect(store.readIntent()).toBeNull();
      const metaIds = set
        .deviceRecords()
        .map((d) => d.deviceId)
        .sort((a, b) => a - b);
      dbg('check: thin ids');
      const pool = thinDevicesOf(set.poolName, dm);
      expect(pool.devices.map((d) => d.thinId)).toEqual(metaIds);
      expect(pool.transactionId).toBe(set.transactionId);
      dbg('check: thin ids read');
      expect(BigInt(dmsetup('status', set.poolName).split(' ')[3]!)).toBe(set.transactionId);
      expect(state!.transactionId).toBe(set.transactionId);
      expect(set.list().sort()).toEqual([...present].sort());
    } finally {
      set.close();
    }
  }

  /** Plans for round `r`: adds of fresh hashes, deletes of hashes earlier rounds left (distinct). */
  function plan(r: number, kill: boolean): { libs: LibPlan[]; clis: Op[] } {
    const victims = [...present].sort();
    const del = (): Op | undefined => {
      const hash = victims.shift();
      return hash === undefined ? undefined : { op: 'delete', hash };
    };
    const add = (tag: string): Op => ({ op: 'add', hash: `r${r}-${tag}` });
    const libs: LibPlan[] = [];
    for (let i = 0; i < LIBS_PER_ROUND; i++) {
      const second = r > 0 && i % 2 === 0 ? del() : undefined;
      libs.push({ ops: [add(`lib${i}a`), second ?? add(`lib${i}b`)] });
    }
    if (kill) {
      // Killed inside a snapshot once the pool holds it (rolled forward), and inside a delete
      // right after the pool message (a delete is always rolled forward).
      libs[0] = { ops: [add('lib0a'), add('lib0b')], killAt: 'snapshot:txid-set' };
      const d = del();
      if (d) libs[1] = { ops: [d, add('lib1b')], killAt: 'delete:message-sent' };
    }
    const clis: Op[] = [];
    for (let j = 0; j < CLIS_PER_ROUND; j++) clis.push((r % 2 === 1 && j === 0 ? del() : undefined) ?? add(`cli${j}`));
    return { libs, clis };
  }

  const ROUNDS = 3;
  const KILL_ROUND = 1;
  for (let r = 0; r < ROUNDS; r++) {
    test(
      `round ${r}: ${LIBS_PER_ROUND} library and ${CLIS_PER_ROUND} CLI processes at once${r === KILL_ROUND ? ', two holders killed mid-transaction' : ''}`,
      async () => {
        const log = join(home, `holds-${r}.log`);
        writeFileSync(log, '');
        const { libs: libPlans, clis } = plan(r, r === KILL_ROUND);
        dbg(`round ${r}: start`);
        // Round 0: the first library child keeps its first hold until a CLI run has ended, so the
        // CLI processes meet a held lock however slowly they start.
        const release = r === 0 ? join(home, 'release-0') : undefined;
        if (release) libPlans[0]!.holdUntil = release;
        const started = await Promise.all(libPlans.map((p) => startLib(home, log, p)));
        dbg('all ready');
        for (const s of started) s.go();
        if (release) await waitForHold(log, started[0]!.pid);
        const cliRuns = (await Promise.all(clis.map((op) => cliSlot(home, op, release)))).flat();
        dbg('clis done');
        const libs = await Promise.all(started.map((s) => s.done));
        dbg('libs done');

        // Who may be named as the holder: any process of this round (0: the record was not yet written).
        const pids = new Set([0, ...libs.map((l) => l.pid), ...cliRuns.map((c) => c.pid)]);
        for (const l of libs) {
          if (l.plan.killAt) {
            expect(l.signal, l.stderr).toBe('SIGKILL');
            stats.killed++;
          } else {
            expect(l.code, l.stderr).toBe(0);
            expect(l.report?.problems).toEqual([]);
            expect(l.report?.results.map((x) => x.error ?? 'ok')).toEqual(l.plan.ops.map(() => 'ok'));
          }
          for (const p of l.report?.refusedBy ?? []) expect(pids.has(p), `refused by ${p}`).toBe(true);
          stats.libRefusals += l.report?.refusedBy.length ?? 0;
        }
        for (const c of cliRuns) {
          stats.cliRuns++;
          const m = CLI_LOCKED.exec(c.stderr);
          if (c.status === 0) stats.cliOk++;
          else {
            expect(c.status, c.stderr).toBe(1);
            expect(c.stderr.trim().split('\n'), 'one line').toHaveLength(1);
            expect(m, c.stderr).not.toBeNull();
            expect(pids.has(Number(m![1])), `refused by ${m![1]}`).toBe(true);
            stats.cliRefusals++;
          }
        }
        // Every CLI op got through in the end.
        for (const op of clis) expect(cliRuns.filter((c) => c.op === op && c.status === 0)).toHaveLength(1);

        // One holder at a time: the logged holds never overlap, and none spans a successful CLI run
        // (a CLI process holds the lock somewhere between its start and its exit).
        const iv = holds(log, libs);
        for (let i = 1; i < iv.length; i++)
          expect(iv[i]!.enter > iv[i - 1]!.leave, `holds of ${iv[i - 1]!.pid} and ${iv[i]!.pid} overlap`).toBe(true);
        for (const c of cliRuns.filter((x) => x.status === 0)) {
          const span = iv.find((h) => h.enter <= c.start && c.end <= h.leave);
          expect(span, `a hold of ${span?.pid} spans CLI ${c.pid}`).toBeUndefined();
        }
        stats.holds += iv.length;

        // The model: every reported success, and what reconcile does at each kill point.
        for (const l of libs) {
          for (const res of l.report?.results ?? []) {
            if (!res.ok) continue;
            stats.libOk++;
            if (res.op === 'add') present.add(res.hash);
            else present.delete(res.hash);
          }
          if (l.plan.killAt) {
            const op = l.plan.ops[0]!;
            const done = CRASH_POINTS[l.plan.killAt].reconcile !== 'back';
            if (op.op === 'add' && done) present.add(op.hash);
            if (op.op === 'delete' && done) present.delete(op.hash);
          }
        }
        for (const c of cliRuns.filter((x) => x.status === 0)) {
          if (c.op.op === 'add') present.add(c.op.hash);
          else present.delete(c.op.hash);
        }
        stats.rounds++;
        await checkPool();
      },
      ROUND_MS,
    );
  }

  test('there was contention: library and CLI processes were refused', () => {
    expect(stats.rounds).toBe(ROUNDS);
    expect(stats.libRefusals).toBeGreaterThan(0);
    expect(stats.cliRefusals).toBeGreaterThan(0);
    expect(stats.killed).toBe(2);
  });
});
