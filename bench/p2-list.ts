// P2: DM_LIST_DEVICES at 100, 1,000 and 10,000 devices (made without tables: they list like any
// other). Ours: the first list of a fresh DeviceMapper (starts at 16 KiB and doubles) and repeated
// lists (the size that worked is remembered); raw C with an exact-size buffer; libdevmapper's names
// list; `dmsetup ls` as a whole process.
import { DeviceMapper } from '../src/dm/device-mapper.js';
import type { Report } from './report.js';
import { runC, wallMs } from './run-process.js';
import { availableParallelism } from 'node:os';
import { afterWarmup, fmt, median, msSince, nowNs, perRound, ratio, scaled } from './stats.js';
import { deviceName } from '../src/dm/names.js';

const SIZES = [100, 1000, 10000];
const listName = (i: number) => deviceName(`bench-list-${String(i).padStart(5, '0')}`);

export async function benchList(report: Report, dm: DeviceMapper, rounds: number): Promise<Record<string, number>> {
  const s = report.section('P2 list (DM_LIST_DEVICES), ms per call', [
    'devices',
    'ours first call',
    'ours repeated',
    'raw C exact buffer',
    'libdevmapper names',
    '`dmsetup ls` process',
    'ours rep. / raw C',
    'ours rep. / libdm',
  ]);
  const out: Record<string, number> = {};
  const kept = new Map<number, { rep: number[]; raw: number[]; lib: number[] }>();
  let made = 0;
  try {
    for (const size of SIZES) {
      const existing = dm.list().length;
      for (; made < size; made++) await dm.create(listName(made), { noNode: true });
      const total = existing + (size - made); // devices the kernel lists (the pool and its friends too)
      const repeats = Math.max(5, scaled(size >= 10000 ? 30 : 100));
      const cols = { first: [] as number[], rep: [] as number[], raw: [] as number[], lib: [] as number[], proc: [] as number[] };
      for (let r = 0; r < rounds; r++) {
        const fresh = DeviceMapper.open({ udev: 'off' });
        let t0 = nowNs();
        const n = fresh.list().length;
        cols.first.push(msSince(t0));
        const per: number[] = [];
        for (let i = 0; i < repeats; i++) {
          t0 = nowNs();
          fresh.list();
          per.push(msSince(t0));
        }
        fresh.close();
        if (n < size) throw new Error(`list gave ${n} devices, expected at least ${size}`);
        cols.rep.push(median(per));
        cols.raw.push(runC('dmraw', ['list', `${repeats}`]).ns! / 1e6);
        cols.lib.push(runC('dmlib', ['list', `${repeats}`]).ns! / 1e6);
        cols.proc.push(wallMs('dmsetup', ['ls']));
      }
      void total;
      kept.set(size, { rep: afterWarmup(cols.rep), raw: afterWarmup(cols.raw), lib: afterWarmup(cols.lib) });
      const m = Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, median(afterWarmup(v))])) as Record<keyof typeof cols, number>;
      for (const [k, v] of Object.entries(m)) out[`${size}:${k}`] = v;
      s.rows.push([
        size.toLocaleString('en-US'),
        fmt(m.first),
        fmt(m.rep),
        fmt(m.raw),
        fmt(m.lib),
        fmt(m.proc),
        ratio(m.rep, m.raw),
        ratio(m.rep, m.lib),
      ]);
    }
  } finally {
    for (let i = 0; i < made; i++) await dm.remove({ name: listName(i) }, { noNode: true });
  }
  const k10 = kept.get(10000)!;
  const smp = availableParallelism() > 1;
  s.notes.push(
    `${rounds - 1} rounds after a warm-up; repeated calls and the C programs: median of ${Math.max(5, scaled(30))}..${Math.max(5, scaled(100))} calls a round, in process.`,
    `Device counts are the bench's devices; the kernel also lists the bench pool.`,
    report.figure({
      key: 'p2.ours_vs_raw',
      label: `P2 ours repeated / raw C exact buffer at 10,000, ms per call${smp ? ' (SMP)' : ''}`,
      // On an SMP kernel: ours at least 0.95x raw C's rate, i.e. at most 1/0.95 of its time.
      target: { op: '<=', value: smp ? 1.05 : 1.2 },
      rounds: perRound(k10.rep, k10.raw),
    }),
    report.figure({
      key: 'p2.ours_vs_libdm',
      label: 'P2 ours repeated / libdevmapper at 10,000, ms per call',
      target: { op: '<=', value: 1 },
      rounds: perRound(k10.rep, k10.lib),
    }),
  );
  return out;
}
