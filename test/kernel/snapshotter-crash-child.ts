// Child of snapshotter-crash.test.ts (bundled by it into one .mjs): open the snapshotter, run the
// calls of its spec (argv[2], JSON: SnapChildSpec) and SIGKILL itself at the k-th counted hook hit:
// a real crash, no finally blocks, no exit handlers. Every hit, call start and answer is appended to
// the event log with write(2) first, so the parent knows what happened before the kill.
import { openSync, writeSync } from 'node:fs';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import type { CrashPointName } from '../../src/thin/crash-points.js';
import type { SnapChildSpec, SnapEvent, SnapOp } from './snapshotter-crash-ops.js';

const spec = JSON.parse(process.argv[2]!) as SnapChildSpec;
const log = openSync(spec.log, 'a');
const emit = (e: SnapEvent) => writeSync(log, `${JSON.stringify(e)}\n`);

let counting = spec.countAfter === undefined && spec.countFrom < 0;
let hits = 0;
const hook = (point: CrashPointName) => {
  emit({ ev: 'hit', point, counted: counting });
  if (counting && (++hits === spec.killAt || point === spec.killAtPoint)) process.kill(process.pid, 'SIGKILL');
  if (point === spec.countAfter) counting = true;
};

const snap = await Snapshotter.open(spec.home, spec.options, { hook });
emit({ ev: 'open' });

async function run(op: SnapOp): Promise<void> {
  switch (op.op) {
    case 'prepare':
      await snap.prepare(op.key, op.parent, { 'containerd.io/snapshot/test': op.key });
      return;
    case 'view':
      await snap.view(op.key, op.parent, {});
      return;
    case 'commit':
      await snap.commit(op.name, op.key, { 'containerd.io/snapshot/committed': 'yes' });
      return;
    case 'remove':
      await snap.remove(op.key);
      return;
    case 'update':
      await snap.update({ name: op.key, labels: { updated: 'yes' } }, ['labels.updated']);
      return;
  }
}

for (const [i, op] of spec.ops.entries()) {
  if (spec.countAfter === undefined && spec.countFrom >= 0 && i >= spec.countFrom) counting = true;
  emit({ ev: 'begin', op });
  await run(op);
  emit({ ev: 'ack', op });
}
emit({ ev: 'done' });
await snap.close();
