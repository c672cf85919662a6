// Profiling aid (not part of `npm run bench`): one workload, for strace -c / node --cpu-prof in the
// guest (bench/profile.sh).
//   node --import tsx bench/profile.ts cycle N [node|nonode]   N snapshot cycles of our library
//   node --import tsx bench/profile.ts list DEVICES CALLS      CALLS lists of DEVICES devices
//   node --import tsx bench/profile.ts layers N [HOME]        N storage-driver layers (P4's options);
//     with DEVMAPPER_PROFILE_MARK=1 each layer's steps are bracketed by access("/.layer-begin") and
//     access("/.layer-end"), which `strace` shows, so one layer's calls can be cut out of a trace.
//   node --import tsx bench/profile.ts layers-c N            N layers of bench/c/dmlayers on a twin
//     pool (DEVMAPPER_PROFILE_WRAP="strace -f -o FILE ..." runs it under a tracer; markers as above)
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { createSnap, deleteThin } from '../src/dm/thin-messages.js';
import { createPool, destroyPool, thinTarget } from './pool.js';
import { msSince, nowNs } from './stats.js';
import { thinId, deviceName } from '../src/dm/names.js';

const [what, a = '100', b = 'node'] = process.argv.slice(2);
const dm = DeviceMapper.open({ udev: 'off' });
if (what === 'layers') {
  const { profileLayers } = await import('./p4-layers.js');
  await profileLayers(Number(a), process.argv[4], process.env.DEVMAPPER_PROFILE_MARK === '1');
} else if (what === 'layers-c') {
  const { profileLayersC } = await import('./p4-layers.js');
  await profileLayersC(Number(a));
} else if (what === 'cycle') {
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
