// Child of thin-crash.test.ts (bundled by it into one .mjs): open the pool, run the operations of
// its spec (argv[2], JSON: ChildSpec), and SIGKILL itself at the k-th hook hit: a real crash, no
// finally blocks, no exit handlers. Every hook hit, operation start and acknowledged operation is
// appended to the event log with write(2) first, so the parent knows what happened before the kill.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { join } from 'node:path';
import type { CrashPointName } from '../../src/thin/crash-points.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { DeviceBusyError } from '../../src/thin/errors.js';
import { PoolNaming } from '../../src/thin/naming.js';
import { bytes } from '../../src/structs/units.js';
import { type ChildEvent, type ChildSpec, contentOf, type Op, prng, randomOp } from './thin-crash-ops.js';

const spec = JSON.parse(process.argv[2]!) as ChildSpec;
const log = openSync(spec.log, 'a');
const emit = (e: ChildEvent) => writeSync(log, `${JSON.stringify(e)}\n`);

let counting = spec.countFrom < 0;
let hits = 0;
const hook = (point: CrashPointName) => {
  if (point === 'open:pool-created' && spec.foreignAtPoolCreated) {
    const dm = DeviceMapper.open({ udev: 'off' });
    try {
      dm.message({ name: PoolNaming.forHome(spec.home, 'dmtest').poolName() }, 0n, 'create_thin 0');
    } finally {
      dm.close();
    }
    emit({ ev: 'ack', op: { op: 'foreign' }, result: 'ok', foreignId: 0 });
  }
  emit({ ev: 'hit', point, counted: counting });
  if (counting && (++hits === spec.killAt || point === spec.killAtPoint)) process.kill(process.pid, 'SIGKILL');
};

let set = await DeviceSet.open(spec.home, spec.options, { hook, deferredDeleteIntervalMs: 0 });
emit({ ev: 'open' });

const mountPoint = (hash: string) => join(spec.mnt, hash);

/**
 * The first id from the metadata's next one that neither the metadata nor the pool holds, taken in
 * the pool behind the pool manager's back: the next create meets it (EEXIST) and must skip it.
 */
function takeForeignId(): number {
  const state = JSON.parse(readFileSync(join(spec.home, 'metadata', 'deviceset-metadata'), 'utf8')) as { next_device_id: number };
  const ours = new Set(set.deviceRecords().map((r) => r.deviceId as number));
  const dm = DeviceMapper.open({ udev: 'off' });
  try {
    for (let id = state.next_device_id; ; id++) {
      if (ours.has(id)) continue;
      try {
        dm.message({ name: set.poolName }, 0n, `create_thin ${id}`);
        return id;
      } catch (e) {
        // Taken by an earlier foreign op (a leak would fail the parent's thin id check).
        if ((e as { code?: string }).code !== 'EEXIST') throw e;
      }
    }
  } finally {
    dm.close();
  }
}

let foreignId: number | undefined;

async function run(op: Op): Promise<'ok' | 'refused' | 'deferred'> {
  switch (op.op) {
    case 'foreign':
      foreignId = takeForeignId();
      return 'ok';
    case 'create':
      await set.addDevice(op.hash, op.from);
      return 'ok';
    case 'delete':
      try {
        await set.deleteDevice(op.hash);
      } catch (e) {
        if (e instanceof DeviceBusyError) return 'refused';
        throw e;
      }
      return set.deviceRecords().some((r) => r.hash === op.hash) ? 'deferred' : 'ok';
    case 'mount':
      await set.mountDevice(op.hash, mountPoint(op.hash), '', { createMountPoint: true });
      return 'ok';
    case 'unmount':
      await set.unmountDevice(op.hash);
      return 'ok';
    case 'activate':
      await set.activateDevice(op.hash);
      return 'ok';
    case 'deactivate':
      await set.deactivateDevice(op.hash);
      return 'ok';
    case 'write': {
      await set.mountDevice(op.hash, mountPoint(op.hash), '', { createMountPoint: true });
      const fd = openSync(join(mountPoint(op.hash), op.file), 'wx');
      writeSync(fd, contentOf(op.file));
      fsyncSync(fd);
      closeSync(fd);
      await set.unmountDevice(op.hash);
      return 'ok';
    }
    case 'resize':
      await set.resizePool(
        op.metadata === undefined
          ? bytes(BigInt(op.bytes))
          : { dataBytes: bytes(BigInt(op.bytes)), metadataBytes: bytes(BigInt(op.metadata)) },
      );
      return 'ok';
    case 'reopen':
      await set.shutdown();
      set = await DeviceSet.open(spec.home, spec.options, { hook, deferredDeleteIntervalMs: 0 });
      return 'ok';
  }
}

for (const [i, op] of spec.ops.entries()) {
  counting = i >= spec.countFrom;
  emit({ ev: 'begin', op });
  const result = await run(op);
  emit({ ev: 'ack', op, result, ...(op.op === 'foreign' ? { foreignId } : {}) });
}
if (spec.random) {
  counting = true;
  const rand = prng(spec.random.seed);
  let n = 0;
  const newName = () => `${spec.random!.prefix}${n++}`;
  mkdirSync(spec.mnt, { recursive: true });
  for (let i = 0; i < spec.random.count; i++) {
    const layers = set.list();
    const mounted = new Set(layers.filter((h) => set.mountPoints(h).length > 0));
    const dataBytes = BigInt(statSync(join(spec.home, 'devicemapper', 'data')).size);
    const op = randomOp(rand, { layers, mounted, dataBytes }, newName);
    emit({ ev: 'begin', op });
    emit({ ev: 'ack', op, result: await run(op) });
  }
}
emit({ ev: 'done' });
await set.close();
