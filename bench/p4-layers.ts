// P4: layers through the storage driver: create(id) + get (activate, mount ext4) + put (unmount,
// deactivate) + remove (delete the thin id), per layer; median and p99 latency.
//
// Against `dmlayers` (bench/c/dmlayers.c), a C program making the same system calls per layer as
// the driver (the dm ioctls, mknod, mount, umount2, the mount point's folders, and the pool
// manager's metadata files and intents with their fsyncs), on a twin pool: a second home opened by
// Driver.init with the same options, so pool table, loop files and the ext4 base (the same mkfs)
// are alike. The C program takes over that pool's thin ids and metadata folder after init.
// And, for information, a shell loop of dmsetup + mount/umount commands (create_snap,
// set_transaction_id, create, mount, mkdir, umount, remove, delete, set_transaction_id) on the
// bench pool's ext4 origin, keeping no state. The three run interleaved in chunks. Ours runs in
// the bench worker (bench/ours.ts), a process that never forks, as the C program runs in its own.
import { execFileSync } from 'node:child_process';
import { accessSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { join } from 'node:path';
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { formatDev } from '../src/structs/dev.js';
import { Driver } from '../src/driver/driver.js';
import type { BenchPool } from './pool.js';
import { BASE_SECTORS } from './pool.js';
import type { OursProcess } from './ours.js';
import type { Report } from './report.js';
import { BUILD_DIR, bash } from './run-process.js';
import { fmt, fmtSpread, median, msSince, nowNs, percentile, perRound, ratio, scaled, spread } from './stats.js';

const SHELL_LAYERS = `
pool=$1 pooldev=$2 origin=$3 first=$4 count=$5 tx=$6 len=$7 mnt=$8 name=bench-layer-$$
for ((i = first; i < first + count; i++)); do
  t0=$EPOCHREALTIME
  dmsetup message "$pool" 0 "create_snap $i $origin"
  dmsetup message "$pool" 0 "set_transaction_id $tx $((tx + 1))"; tx=$((tx + 1))
  dmsetup create "$name" --table "0 $len thin $pooldev $i"
  mount -t ext4 "/dev/mapper/$name" "$mnt"
  mkdir -p "$mnt/rootfs"
  umount "$mnt"
  dmsetup remove "$name"
  dmsetup message "$pool" 0 "delete $i"
  dmsetup message "$pool" 0 "set_transaction_id $tx $((tx + 1))"; tx=$((tx + 1))
  t1=$EPOCHREALTIME
  echo "us $(( \${t1/./} - \${t0/./} ))"
done
echo "tx $tx"
`;

/** Driver options: small loop files, and no discard before delete (the shell loop does none). */
export const DRIVER_OPTIONS = [
  'dm.loopdatasize=1G',
  'dm.loopmetadatasize=64M',
  'dm.basesize=64M',
  'dm.prefix=bench',
  'dm.min_free_space=0%',
  'dm.blkdiscard=false',
];

const STEPS = ['create', 'get', 'put', 'remove'] as const;
type Step = (typeof STEPS)[number];
type Steps = Record<Step, number[]>;
const noSteps = (): Steps => ({ create: [], get: [], put: [], remove: [] });

/** The C program's view of the twin pool: what it needs to carry on where Driver.init stopped. */
interface Twin {
  driver: Driver;
  home: string;
  args: { pool: string; poolDev: string; stem: string; originId: number; sizeBytes: bigint };
  nextId: number;
  tx: bigint;
}

async function openTwin(): Promise<Twin> {
  const home = mkdtempSync(join(tmpdir(), 'dm-bench-dmlayers-'));
  const driver = await Driver.init(home, DRIVER_OPTIONS);
  const set = driver.deviceSet;
  const records = set.deviceRecords();
  const base = records.find((r) => r.hash === '');
  if (!base) throw new Error('P4: the twin pool has no base device');
  const dm = DeviceMapper.open({ udev: 'off' });
  try {
    const info = dm.info({ name: set.poolName });
    if (!info) throw new Error(`P4: the twin pool ${set.poolName} is not active`);
    return {
      driver,
      home,
      args: { pool: set.poolName, poolDev: formatDev(info.dev), stem: set.naming.stem, originId: base.deviceId, sizeBytes: base.sizeBytes },
      nextId: Math.max(...records.map((r) => r.deviceId)) + 1,
      tx: set.transactionId,
    };
  } finally {
    dm.close();
  }
}

/** Our Driver's layers, in the bench worker: a Driver of its own in `home`. */
export class OursLayers {
  private layer = 0;
  private constructor(
    private readonly driver: Driver,
    private readonly home: string,
  ) {}

  static async init(home: string, options: readonly string[]): Promise<OursLayers> {
    return new OursLayers(await Driver.init(home, [...options]), home);
  }

  /** `count` layers; each one's total and its steps' times (ms), and the minor faults taken. */
  async run(count: number): Promise<{ total: number[]; steps: Steps; faults: number }> {
    const faults0 = process.resourceUsage().minorPageFault;
    const total: number[] = [];
    const steps = noSteps();
    for (let i = 0; i < count; i++, this.layer++) {
      const id = `layer-${this.layer}`;
      const t0 = nowNs();
      let t = t0;
      const lap = (k: Step) => {
        steps[k].push(msSince(t));
        t = nowNs();
      };
      await this.driver.create(id, '');
      lap('create');
      await this.driver.get(id);
      lap('get');
      await this.driver.put(id);
      lap('put');
      await this.driver.remove(id);
      lap('remove');
      total.push(msSince(t0));
    }
    return { total, steps, faults: process.resourceUsage().minorPageFault - faults0 };
  }

  async cleanup(): Promise<void> {
    await this.driver.cleanup();
    rmSync(this.home, { recursive: true, force: true });
  }
}

export async function benchLayers(report: Report, worker: OursProcess, pool: BenchPool): Promise<Record<string, number>> {
  const s = report.section('P4 layers: create + get (mount) + put + remove, ms per layer', [
    'program',
    'layers',
    'median',
    'p99',
    'vs C anchor (median)',
  ]);
  const home = mkdtempSync(join(tmpdir(), 'dm-bench-driver-'));
  const mnt = mkdtempSync(join(tmpdir(), 'dm-bench-shell-mnt-'));
  await worker.call('p4-init', { home, options: DRIVER_OPTIONS });
  let twin: Twin | undefined;
  const total = scaled(200);
  const chunk = Math.max(1, Math.round(total / 8));
  const warm = Math.max(1, Math.round(chunk / 5));
  const ours: number[] = [];
  const oursSteps = noSteps();
  const c: number[] = [];
  const cSteps = noSteps();
  const shell: number[] = [];
  /** Per chunk (round): the medians of ours and of the C program. */
  const chunkMedians = { ours: [] as number[], c: [] as number[] };
  /** Per chunk, ours' minor page faults a layer. */
  const faultsPerLayer: number[] = [];
  let cLayer = 0;
  let shellId = 1;
  let shellTx = 0;
  const runOurs = async (count: number, keep: boolean): Promise<number[]> => {
    const got = await worker.call('p4-run', { count });
    if (keep) {
      faultsPerLayer.push(got.faults / count);
      ours.push(...got.total);
      for (const k of STEPS) oursSteps[k].push(...got.steps[k]);
    }
    return got.total;
  };
  const runC = (count: number, keep: boolean): number[] => {
    const tw = twin!;
    const a = tw.args;
    const out = execFileSync(
      join(BUILD_DIR, 'dmlayers'),
      [a.pool, a.poolDev, a.stem, `${a.originId}`, `${a.sizeBytes}`, tw.home, `${tw.nextId}`, `${cLayer}`, `${count}`, `${tw.tx}`],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const got: number[] = [];
    for (const m of out.matchAll(/^layer (\d+) (\d+) (\d+) (\d+)$/gm)) {
      const ms = m.slice(1, 5).map((x) => Number(x) / 1e6);
      got.push(ms.reduce((x, y) => x + y, 0));
      if (keep) for (const [i, k] of STEPS.entries()) cSteps[k].push(ms[i] as number);
    }
    const tx = /^tx (\d+)$/m.exec(out)?.[1];
    if (got.length !== count || tx === undefined) throw new Error(`dmlayers: ${got.length} of ${count} layers: ${out.slice(-200)}`);
    tw.nextId += count;
    tw.tx = BigInt(tx);
    cLayer += count;
    if (keep) c.push(...got);
    return got;
  };
  const runShell = (count: number, keep: boolean) => {
    const out = bash(SHELL_LAYERS, [
      pool.name,
      pool.dev,
      `${pool.originId}`,
      `${shellId}`,
      `${count}`,
      `${shellTx}`,
      `${BASE_SECTORS}`,
      mnt,
    ]);
    shellId += count;
    for (const m of out.matchAll(/^us (\d+)$/gm)) if (keep) shell.push(Number(m[1]) / 1000);
    shellTx = Number(/^tx (\d+)$/m.exec(out)?.[1] ?? shellTx);
  };
  try {
    twin = await openTwin();
    await runOurs(warm, false);
    runC(warm, false);
    runShell(warm, false);
    while (ours.length < total) {
      const n = Math.min(chunk, total - ours.length);
      chunkMedians.ours.push(median(await runOurs(n, true)));
      chunkMedians.c.push(median(runC(n, true)));
      runShell(n, true);
    }
  } finally {
    await worker.call('p4-cleanup', {});
    rmSync(mnt, { recursive: true, force: true });
    if (twin) {
      await twin.driver.cleanup();
      rmSync(twin.home, { recursive: true, force: true });
    }
  }
  const med = {
    ours: median(ours),
    ours99: percentile(ours, 99),
    c: median(c),
    c99: percentile(c, 99),
    shell: median(shell),
    shell99: percentile(shell, 99),
  };
  s.rows.push(['ours (Driver)', `${ours.length}`, fmt(med.ours), fmt(med.ours99), ratio(med.ours, med.c)]);
  s.rows.push(['C anchor (dmlayers: the same system calls)', `${c.length}`, fmt(med.c), fmt(med.c99), '1.00']);
  s.rows.push(['dmsetup + mount commands (no state kept)', `${shell.length}`, fmt(med.shell), fmt(med.shell99), ratio(med.shell, med.c)]);
  const perStep = (st: Steps) => STEPS.map((k) => `${k} ${fmt(median(st[k]))}`).join(', ');
  s.notes.push(
    report.figure({
      key: 'p4.ours_vs_c',
      label: 'P4 ours (Driver) / C anchor, ms per layer (median)',
      target: { op: '<=', value: 1.3 },
      rounds: perRound(chunkMedians.ours, chunkMedians.c),
    }),
    `Chunks of ${chunk} layers alternate between the three (ours, C, shell); a warm-up chunk of ${warm} each is dropped. A round is a chunk: its ratio is ours' median over the C program's.`,
    `Per step (median ms): ours ${perStep(oursSteps)}; C ${perStep(cSteps)}.`,
    `ours' minor page faults a layer, per chunk: ${fmtSpread(spread(faultsPerLayer))}.`,
    'The C program writes the same metadata files and intents (temp file, fsync, rename, fsync of the folder) on a twin pool made by Driver.init with the same options; the shell loop keeps no state.',
    `Driver options: ${DRIVER_OPTIONS.join(' ')}.`,
  );
  return med;
}

/** bench/profile.ts `layers N`: N layers of ours alone, for strace and --cpu-prof. */
export async function profileLayers(count: number, home = mkdtempSync(join(tmpdir(), 'dm-prof-driver-')), mark = false): Promise<void> {
  const driver = await Driver.init(home, DRIVER_OPTIONS);
  const marker = (what: string) => {
    try {
      accessSync(`/.layer-${what}`);
    } catch {
      // Never there: the call is a marker in a trace.
    }
  };
  try {
    const t0 = nowNs();
    const r0 = process.resourceUsage();
    const c0 = process.cpuUsage();
    const gc = { n: 0, ms: 0 };
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        gc.n++;
        gc.ms += e.duration;
      }
    });
    obs.observe({ entryTypes: ['gc'] });
    for (let i = 0; i < count; i++) {
      const id = `layer-${i}`;
      if (mark) marker('begin');
      await driver.create(id, '');
      await driver.get(id);
      await driver.put(id);
      await driver.remove(id);
      if (mark) marker('end');
    }
    const r1 = process.resourceUsage();
    const cpu = process.cpuUsage(c0);
    await new Promise((r) => setImmediate(r));
    obs.disconnect();
    const per = (k: 'minorPageFault' | 'majorPageFault' | 'voluntaryContextSwitches' | 'involuntaryContextSwitches') =>
      fmt((r1[k] - r0[k]) / count);
    process.stderr.write(
      `layers: ${fmt(msSince(t0) / count)} ms per layer; per layer: ${per('minorPageFault')} minor faults, ${per('majorPageFault')} major, ` +
        `${per('voluntaryContextSwitches')} voluntary context switches, ${per('involuntaryContextSwitches')} involuntary, ` +
        `CPU ${fmt(cpu.user / 1000 / count)} ms user + ${fmt(cpu.system / 1000 / count)} ms system; ` +
        `${gc.n} collections taking ${fmt(gc.ms)} ms in all\n`,
    );
  } finally {
    await driver.cleanup();
    rmSync(home, { recursive: true, force: true });
  }
}

/** bench/profile.ts `layers-c N`: N layers of the C program on a twin pool (for strace), as the bench runs it. */
export async function profileLayersC(count: number): Promise<void> {
  const twin = await openTwin();
  try {
    const a = twin.args;
    const args = [a.pool, a.poolDev, a.stem, `${a.originId}`, `${a.sizeBytes}`, twin.home, `${twin.nextId}`, '0', `${count}`, `${twin.tx}`];
    const wrap = process.env.DEVMAPPER_PROFILE_WRAP?.split(' ').filter((w) => w !== '') ?? [];
    const [cmd, ...rest] = [...wrap, join(BUILD_DIR, 'dmlayers'), ...args] as [string, ...string[]];
    const out = execFileSync(cmd, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const ns = [...out.matchAll(/^layer (\d+) (\d+) (\d+) (\d+)$/gm)].map((m) => m.slice(1, 5).reduce((x, y) => x + Number(y), 0));
    process.stderr.write(`layers-c: ${fmt(median(ns) / 1e6)} ms per layer (median of ${ns.length})\n`);
  } finally {
    await twin.driver.cleanup();
    rmSync(twin.home, { recursive: true, force: true });
  }
}
