// P1: the snapshot cycle (create_snap, create + load + resume with its node, remove, delete), in
// cycles/s, for our library, raw ioctls from C (with and without mknod), libdevmapper, and a shell
// loop of dmsetup commands, interleaved round by round in one boot. Ours runs in the bench worker
// (bench/ours.ts), a process that never forks, as the C programs run in their own.
import type { DeviceMapper } from '../src/dm/device-mapper.js';
import { createSnap, deleteThin } from '../src/dm/thin-messages.js';
import { thinTarget, type BenchPool } from './pool.js';
import type { OursProcess } from './ours.js';
import type { Report } from './report.js';
import { bash, runC } from './run-process.js';
import { availableParallelism } from 'node:os';
import { afterWarmup, fmt, fmtSpread, median, msSince, nowNs, perRound, ratio, scaled, spread } from './stats.js';
import { thinId, deviceName } from '../src/dm/names.js';

const DMSETUP_LOOP = `
pool=$1 pooldev=$2 origin=$3 first=$4 count=$5 name=bench-dmsetup-$$
t0=$EPOCHREALTIME
for ((i = first; i < first + count; i++)); do
  dmsetup message "$pool" 0 "create_snap $i $origin"
  dmsetup create "$name" --table "0 2097152 thin $pooldev $i"
  dmsetup remove "$name"
  dmsetup message "$pool" 0 "delete $i"
done
t1=$EPOCHREALTIME
echo "us $(( (\${t1/./} - \${t0/./}) ))"
`;

interface Program {
  label: string;
  cycles: number;
  /** Runs `count` cycles with thin ids from `first`; resolves to elapsed ms. */
  run(first: number, count: number): Promise<number>;
}

/** `count` cycles of our library with thin ids from `first` (in the bench worker): elapsed ms, and
 * the minor page faults the worker took meanwhile (each one a round trip to the host in UML). */
export async function oursCycles(
  dm: DeviceMapper,
  a: { pool: Pick<BenchPool, 'name' | 'dev' | 'originId'>; first: number; count: number; noNode: boolean },
): Promise<{ ms: number; faults: number }> {
  const { pool, noNode } = a;
  const faults0 = process.resourceUsage().minorPageFault;
  const ref = { name: pool.name };
  const name = deviceName(`bench-ts-${process.pid}`);
  const t0 = nowNs();
  for (let id = a.first; id < a.first + a.count; id++) {
    createSnap(dm, ref, thinId(id), thinId(pool.originId));
    await dm.create(name, { table: [thinTarget(pool, id)], noNode });
    await dm.remove({ name }, { noNode });
    deleteThin(dm, ref, thinId(id));
  }
  const ms = msSince(t0);
  return { ms, faults: process.resourceUsage().minorPageFault - faults0 };
}

export async function benchSnapshotCycle(
  report: Report,
  dm: DeviceMapper,
  worker: OursProcess,
  pool: BenchPool,
  rounds: number,
): Promise<Record<string, number>> {
  const poolRef = { name: pool.name, dev: pool.dev, originId: pool.originId };
  const ours =
    (noNode: boolean) =>
    async (first: number, count: number): Promise<number> => {
      const r = await worker.call('p1', { pool: poolRef, first, count, noNode });
      faults.get(noNode)?.push(r.faults / count);
      return r.ms;
    };
  /** Per round, ours' minor page faults a cycle, with node and without. */
  const faults = new Map<boolean, number[]>([
    [false, []],
    [true, []],
  ]);
  const n = scaled(300);
  const programs: Program[] = [
    { label: 'ours (library, with node)', cycles: n, run: ours(false) },
    {
      label: 'raw C ioctls + mknod',
      cycles: n,
      run: async (f, c) => runC('dmraw', ['cycle', pool.name, pool.dev, '0', `${f}`, `${c}`, dm.mapperDir]).ns! / 1e6,
    },
    {
      label: 'libdevmapper (C)',
      cycles: n,
      run: async (f, c) => runC('dmlib', ['cycle', pool.name, pool.dev, '0', `${f}`, `${c}`]).ns! / 1e6,
    },
    { label: 'ours (library, noNode)', cycles: n, run: ours(true) },
    {
      label: 'raw C ioctls, no node',
      cycles: n,
      run: async (f, c) => runC('dmraw', ['cycle', pool.name, pool.dev, '0', `${f}`, `${c}`, '-']).ns! / 1e6,
    },
    {
      label: 'dmsetup shell loop',
      cycles: scaled(4),
      run: async (f, c) => Number(/us (\d+)/.exec(bash(DMSETUP_LOOP, [pool.name, pool.dev, '0', `${f}`, `${c}`]))?.[1]) / 1000,
    },
  ];
  const rates = new Map<string, number[]>(programs.map((p) => [p.label, []]));
  let nextId = 1;
  for (let r = 0; r < rounds; r++) {
    // Rotate the order each round: the program that runs right after the dmsetup loop (hundreds of
    // process exits) pays for the kernel's deferred work, and that must not always be the same one.
    const order = programs.map((_, k) => programs[(k + r) % programs.length]!);
    for (const p of order) {
      const ms = await p.run(nextId, p.cycles);
      nextId += p.cycles;
      rates.get(p.label)!.push(p.cycles / (ms / 1000));
    }
  }
  const med: Record<string, number> = {};
  for (const p of programs) med[p.label] = median(afterWarmup(rates.get(p.label)!));
  const raw = med['raw C ioctls + mknod']!;
  const s = report.section('P1 snapshot cycle (create_snap, create+load+resume+node, remove, delete)', [
    'program',
    'cycles/s',
    'µs/cycle',
    'vs raw C + mknod',
  ]);
  for (const p of programs) {
    const v = med[p.label]!;
    s.rows.push([p.label, fmt(v), fmt(1e6 / v), ratio(v, raw)]);
  }
  const kept = (label: string) => afterWarmup(rates.get(label)!);
  const smp = availableParallelism() > 1;
  s.notes.push(
    `${rounds - 1} rounds after a warm-up; ${n} cycles a round (dmsetup ${scaled(4)}); median of the rounds.`,
    `ours' minor page faults a cycle, per round: with node ${fmtSpread(spread(afterWarmup(faults.get(false)!)))}, noNode ${fmtSpread(spread(afterWarmup(faults.get(true)!)))}.`,
    `ours (noNode) / raw C (no node), per round: ${fmtSpread(spread(perRound(kept('ours (library, noNode)'), kept('raw C ioctls, no node'))))}; libdevmapper / raw C + mknod: ${fmtSpread(spread(perRound(kept('libdevmapper (C)'), kept('raw C ioctls + mknod'))))}.`,
    report.figure({
      key: 'p1.ours_vs_raw',
      label: `P1 ours (with node) / raw C + mknod, cycles/s${smp ? ' (SMP)' : ''}`,
      target: { op: '>=', value: smp ? 0.95 : 0.9 },
      rounds: perRound(kept('ours (library, with node)'), kept('raw C ioctls + mknod')),
    }),
  );
  return med;
}
