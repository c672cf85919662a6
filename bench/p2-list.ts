// P2: DM_LIST_DEVICES at 100, 1,000 and 10,000 devices (made without tables: they list like any
// other). Ours: the first list() of a fresh DeviceMapper (starts at 16 KiB and doubles), repeated
// list() (the size that worked is remembered; an entry object per device), repeated listNames()
// (what docs/api.md tells a caller that wants the names: one string per device), and finding one
// name with listView().indexOf; raw C with an exact-size buffer; libdevmapper's names list; both C
// programs fold every byte of every name into a checksum, which ours must match; `dmsetup ls` as a
// whole process. Ours runs in the bench worker (bench/ours.ts), a process that never forks.
import { DeviceMapper } from '../src/dm/device-mapper.js';
import type { OursProcess } from './ours.js';
import type { Report } from './report.js';
import { runC, wallMs } from './run-process.js';
import { availableParallelism } from 'node:os';
import { afterWarmup, fmt, median, msSince, nowNs, perRound, ratio, scaled } from './stats.js';
import { deviceName, type DeviceName } from '../src/dm/names.js';

const SIZES = [100, 1000, 10000];
const listName = (i: number) => deviceName(`bench-list-${String(i).padStart(5, '0')}`);

/** bench/c's checksum: FNV-1a of each name's bytes, summed (mod 2^32) whatever the order. */
function nameSum(names: readonly string[]): number {
  let sum = 0;
  for (const name of names) {
    let h = 2166136261;
    for (const byte of Buffer.from(name, 'utf8')) h = Math.imul(h ^ byte, 16777619) >>> 0;
    sum = (sum + h) >>> 0;
  }
  return sum;
}

/** What one round of ours measured, in the bench worker (ms per call; medians of the repeats). */
export interface OursListRound {
  first: number;
  rep: number;
  names: number;
  find: number;
  /** Entries of the first list(), names of the last listNames() and their checksum. */
  devices: number;
  namesLength: number;
  sum: number;
  /** listView().indexOf(wanted) found it, at the index listNames() has it. */
  found: boolean;
}

/**
 * One round of ours, in the bench worker: the first list() of a fresh DeviceMapper, then `repeats`
 * of list(), listNames() and listView().indexOf(wanted), interleaved so that each call sees the same
 * state of the machine.
 */
export function oursListRound(a: { repeats: number; wanted: DeviceName }): OursListRound {
  const fresh = DeviceMapper.open({ udev: 'off' });
  try {
    let t0 = nowNs();
    const devices = fresh.list().length;
    const first = msSince(t0);
    const per = { rep: [] as number[], names: [] as number[], find: [] as number[] };
    let names: string[] = [];
    let found = -1;
    for (let i = 0; i < a.repeats; i++) {
      t0 = nowNs();
      fresh.list();
      per.rep.push(msSince(t0));
      t0 = nowNs();
      names = fresh.listNames();
      per.names.push(msSince(t0));
      t0 = nowNs();
      found = fresh.listView().indexOf(a.wanted);
      per.find.push(msSince(t0));
    }
    return {
      first,
      rep: median(per.rep),
      names: median(per.names),
      find: median(per.find),
      devices,
      namesLength: names.length,
      sum: nameSum(names),
      found: found >= 0 && names[found] === a.wanted,
    };
  } finally {
    fresh.close();
  }
}

export async function benchList(report: Report, dm: DeviceMapper, worker: OursProcess, rounds: number): Promise<Record<string, number>> {
  const s = report.section('P2 list (DM_LIST_DEVICES), ms per call', [
    'devices',
    'ours list() first call',
    'ours list() repeated',
    'ours listNames() repeated',
    'ours find one name (listView)',
    'raw C exact buffer',
    'libdevmapper names',
    '`dmsetup ls` process',
    'listNames / raw C',
    'listNames / libdm',
    'list() / raw C',
  ]);
  const out: Record<string, number> = {};
  const kept = new Map<number, { names: number[]; raw: number[]; lib: number[] }>();
  let made = 0;
  try {
    for (const size of SIZES) {
      for (; made < size; made++) await dm.create(listName(made), { noNode: true });
      const repeats = Math.max(5, scaled(size >= 10000 ? 30 : 100));
      const cols = {
        first: [] as number[],
        rep: [] as number[],
        names: [] as number[],
        find: [] as number[],
        raw: [] as number[],
        lib: [] as number[],
        proc: [] as number[],
      };
      const wanted = listName(size - 1);
      for (let r = 0; r < rounds; r++) {
        const o = await worker.call('p2', { repeats, wanted });
        if (o.devices < size) throw new Error(`list gave ${o.devices} devices, expected at least ${size}`);
        if (!o.found) throw new Error(`listView did not find ${wanted}`);
        cols.first.push(o.first);
        cols.rep.push(o.rep);
        cols.names.push(o.names);
        cols.find.push(o.find);
        const raw = runC('dmraw', ['list', `${repeats}`]);
        const lib = runC('dmlib', ['list', `${repeats}`]);
        // The same devices, and every name read: counts and checksums agree with ours.
        for (const [who, c] of [
          ['dmraw', raw],
          ['dmlib', lib],
        ] as const) {
          if (c.devices !== o.devices || c.devices !== o.namesLength || c.sum !== o.sum) {
            throw new Error(`${who} saw ${c.devices} devices (sum ${c.sum}); ours ${o.devices} / ${o.namesLength} (sum ${o.sum})`);
          }
        }
        cols.raw.push(raw.ns! / 1e6);
        cols.lib.push(lib.ns! / 1e6);
        cols.proc.push(wallMs('dmsetup', ['ls']));
      }
      kept.set(size, { names: afterWarmup(cols.names), raw: afterWarmup(cols.raw), lib: afterWarmup(cols.lib) });
      const m = Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, median(afterWarmup(v))])) as Record<keyof typeof cols, number>;
      for (const [k, v] of Object.entries(m)) out[`${size}:${k}`] = v;
      s.rows.push([
        size.toLocaleString('en-US'),
        fmt(m.first),
        fmt(m.rep),
        fmt(m.names),
        fmt(m.find),
        fmt(m.raw),
        fmt(m.lib),
        fmt(m.proc),
        ratio(m.names, m.raw),
        ratio(m.names, m.lib),
        ratio(m.rep, m.raw),
      ]);
    }
  } finally {
    for (let i = 0; i < made; i++) await dm.remove({ name: listName(i) }, { noNode: true });
  }
  const k10 = kept.get(10000)!;
  const smp = availableParallelism() > 1;
  s.notes.push(
    `${rounds - 1} rounds after a warm-up; repeated calls and the C programs: median of ${Math.max(5, scaled(30))}..${Math.max(5, scaled(100))} calls a round, each program timing itself in its own process (ours in the bench worker).`,
    "Devices: the bench's, and whatever else the kernel lists (the bench pool); every program saw the same count and name checksum.",
    'list(): an entry object per device (name, dev, eventNr). listNames(): the names alone, what a caller that wants names uses (docs/api.md); the targets are on it. Find one name: listView() (the reply copied and indexed) + indexOf, no string made. C: every byte of every name folded into a checksum.',
    report.figure({
      key: 'p2.ours_vs_raw',
      label: `P2 ours listNames() / raw C exact buffer at 10,000, ms per call${smp ? ' (SMP)' : ''}`,
      // On an SMP kernel: ours at least 0.95x raw C's rate, i.e. at most 1/0.95 of its time.
      target: { op: '<=', value: smp ? 1.05 : 1.2 },
      rounds: perRound(k10.names, k10.raw),
    }),
    report.figure({
      key: 'p2.ours_vs_libdm',
      label: 'P2 ours listNames() / libdevmapper at 10,000, ms per call',
      target: { op: '<=', value: 1 },
      rounds: perRound(k10.names, k10.lib),
    }),
  );
  return out;
}
