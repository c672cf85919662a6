// Profiling aid (not part of `npm run bench`): one workload, for strace -c / node --cpu-prof in the
// guest (bench/profile.sh).
//   node --import tsx bench/profile.ts cycle N [node|nonode]   N snapshot cycles of our library
//   node --import tsx bench/profile.ts list DEVICES CALLS      CALLS lists of DEVICES devices
//   node --import tsx bench/profile.ts compare ROUNDS N        N cycles of ours and of dmraw (with
//                                                              nodes), alternating, ROUNDS times
//   node --import tsx bench/profile.ts layers N [HOME]        N storage-driver layers (P4's options);
//     with DEVMAPPER_PROFILE_MARK=1 each layer's steps are bracketed by access("/.layer-begin") and
//     access("/.layer-end"), which `strace` shows, so one layer's calls can be cut out of a trace.
//   node --import tsx bench/profile.ts alloc N               bytes allocated a snapshot cycle (with
//     nodes), by call site, over N cycles after 300 of warm-up (bench/alloc-profile.ts)
//   node --import tsx bench/profile.ts alloc-layers N        the same for N storage-driver layers
//   node --import tsx bench/profile.ts layers-c N            N layers of bench/c/dmlayers on a twin
//     pool (DEVMAPPER_PROFILE_WRAP="strace -f -o FILE ..." runs it under a tracer; markers as above)
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { createPool, destroyPool } from './pool.js';
import { msSince, nowNs } from './stats.js';
import { deviceName } from '../src/dm/names.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BUILD_DIR } from './run-process.js';
import { printAllocations } from './alloc-profile.js';
import { oursCycles } from './p1-cycle.js';
import { DRIVER_OPTIONS, OursLayers } from './p4-layers.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const [what, a = '100', b = 'node'] = process.argv.slice(2);
const dm = DeviceMapper.open({ udev: 'off' });
if (what === 'layers') {
  const { profileLayers } = await import('./p4-layers.js');
  await profileLayers(Number(a), process.argv[4], process.env.DEVMAPPER_PROFILE_MARK === '1');
} else if (what === 'alloc') {
  const pool = await createPool(dm, deviceName(`bench-prof-${process.pid}`), { mkfs: false });
  const n = Number(a);
  await oursCycles(dm, { pool, first: 1, count: 300, noNode: false });
  await printAllocations(
    async () => {
      await oursCycles(dm, { pool, first: 301, count: n, noNode: false });
    },
    n,
    'snapshot cycle',
  );
  await destroyPool(dm, pool);
} else if (what === 'alloc-layers') {
  const home = mkdtempSync(join(tmpdir(), 'dm-prof-driver-'));
  const layers = await OursLayers.init(home, DRIVER_OPTIONS);
  try {
    const n = Number(a);
    await layers.run(20);
    await printAllocations(
      async () => {
        await layers.run(n);
      },
      n,
      'storage-driver layer',
    );
  } finally {
    await layers.cleanup();
  }
} else if (what === 'layers-c') {
  const { profileLayersC } = await import('./p4-layers.js');
  await profileLayersC(Number(a));
} else if (what === 'cycle') {
  const pool = await createPool(dm, deviceName(`bench-prof-${process.pid}`), { mkfs: false });
  const { ms } = await oursCycles(dm, { pool, first: 1, count: Number(a), noNode: b === 'nonode' });
  process.stderr.write(`cycle: ${((Number(a) / ms) * 1000).toFixed(0)} cycles/s\n`);
  await destroyPool(dm, pool);
} else if (what === 'compare') {
  // Besides the times: minor page faults and context switches a cycle, ours from getrusage around
  // the loop, the C program's from GNU time with its start-up (a run of 0 cycles) taken off. In
  // user-mode-linux every fault and switch is a round trip through the host.
  const pool = await createPool(dm, deviceName(`bench-prof-${process.pid}`), { mkfs: false });
  const n = Number(b);
  const timed = (first: number, count: number) => {
    const args = ['-f', '%R %w %c', join(BUILD_DIR, 'dmraw'), 'cycle', pool.name, pool.dev, '0', `${first}`, `${count}`, dm.mapperDir];
    const r = spawnSync('/usr/bin/time', args, { encoding: 'utf8' });
    const [faults, vol, invol] = r.stderr.trim().split(/\s+/).slice(-3).map(Number) as [number, number, number];
    return { ms: Number(/ns (\d+)/.exec(r.stdout)?.[1]) / 1e6, faults, switches: vol + invol };
  };
  const base = timed(1, 0);
  let id = 1;
  const ratios: number[] = [];
  for (let r = 0; r < Number(a); r++) {
    const u0 = process.resourceUsage();
    const { ms: ours } = await oursCycles(dm, { pool, first: id, count: n, noNode: false });
    const u1 = process.resourceUsage();
    id += n;
    const raw = timed(id, n);
    id += n;
    ratios.push(raw.ms / ours);
    const per = (x: number) => (x / n).toFixed(2);
    const oursSwitches =
      u1.voluntaryContextSwitches + u1.involuntaryContextSwitches - u0.voluntaryContextSwitches - u0.involuntaryContextSwitches;
    process.stderr.write(
      `round ${r}: ours ${((ours / n) * 1000).toFixed(0)} us, raw ${((raw.ms / n) * 1000).toFixed(0)} us a cycle: ${(raw.ms / ours).toFixed(2)}; ` +
        `faults ours ${per(u1.minorPageFault - u0.minorPageFault)} raw ${per(raw.faults - base.faults)}, ` +
        `switches ours ${per(oursSwitches)} raw ${per(raw.switches - base.switches)}\n`,
    );
  }
  const sorted = ratios.slice(1).sort((x, y) => x - y);
  process.stderr.write(`median raw/ours after the first round: ${sorted[sorted.length >> 1]?.toFixed(2)}\n`);
  await destroyPool(dm, pool);
} else if (what === 'list') {
  const n = Number(a);
  for (let i = 0; i < n; i++) await dm.create(deviceName(`bench-prof-${i}`), { noNode: true });
  dm.list();
  const t0 = nowNs();
  for (let i = 0; i < Number(b); i++) dm.list();
  process.stderr.write(`list: ${(msSince(t0) / Number(b)).toFixed(3)} ms per call of ${n}\n`);
  for (let i = 0; i < n; i++) await dm.remove({ name: deviceName(`bench-prof-${i}`) }, { noNode: true });
}
dm.close();
