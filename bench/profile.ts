// Profiling aid (not part of `npm run bench`): one workload, for strace -c / node --cpu-prof in the
// guest (bench/profile.sh).
//   node --import tsx bench/profile.ts cycle N [node|nonode]   N snapshot cycles of our library
//   node --import tsx bench/profile.ts list DEVICES CALLS      CALLS lists of DEVICES devices
//   node --import tsx bench/profile.ts compare ROUNDS N        N cycles of ours and of dmraw (with
//                                                              nodes), alternating, ROUNDS times
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { createSnap, deleteThin } from '../src/dm/thin-messages.js';
import { createPool, destroyPool, thinTarget } from './pool.js';
import { msSince, nowNs } from './stats.js';
import { thinId, deviceName } from '../src/dm/names.js';
import { runC } from './run-process.js';

const [what, a = '100', b = 'node'] = process.argv.slice(2);
const dm = DeviceMapper.open({ udev: 'off' });
if (what === 'cycle') {
  const pool = await createPool(dm, deviceName(`bench-prof-${process.pid}`), { mkfs: false });
  const ref = { name: pool.name };
  const noNode = b === 'nonode';
  const t0 = nowNs();
  for (let id = 1; id <= Number(a); id++) {
    createSnap(dm, ref, thinId(id), thinId(0));
    await dm.create(deviceName('bench-prof-snap'), { table: [thinTarget(pool, id)], noNode });
    await dm.remove({ name: deviceName('bench-prof-snap') }, { noNode });
    deleteThin(dm, ref, thinId(id));
  }
  process.stderr.write(`cycle: ${((Number(a) / msSince(t0)) * 1000).toFixed(0)} cycles/s\n`);
  await destroyPool(dm, pool);
} else if (what === 'compare') {
  const pool = await createPool(dm, deviceName(`bench-prof-${process.pid}`), { mkfs: false });
  const ref = { name: pool.name };
  const name = deviceName('bench-prof-snap');
  const n = Number(b);
  let id = 1;
  const ratios: number[] = [];
  for (let r = 0; r < Number(a); r++) {
    const t0 = nowNs();
    for (const end = id + n; id < end; id++) {
      createSnap(dm, ref, thinId(id), thinId(0));
      await dm.create(name, { table: [thinTarget(pool, id)] });
      await dm.remove({ name });
      deleteThin(dm, ref, thinId(id));
    }
    const ours = msSince(t0);
    const raw = runC('dmraw', ['cycle', pool.name, pool.dev, '0', `${id}`, `${n}`, dm.mapperDir]).ns! / 1e6;
    id += n;
    ratios.push(raw / ours);
    process.stderr.write(
      `round ${r}: ours ${((ours / n) * 1000).toFixed(0)} us, raw ${((raw / n) * 1000).toFixed(0)} us a cycle: ${(raw / ours).toFixed(2)}\n`,
    );
  }
  const sorted = ratios.slice(1).sort((x, y) => x - y);
  process.stderr.write(`median ours/raw after the first round: ${sorted[sorted.length >> 1]?.toFixed(2)}\n`);
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
