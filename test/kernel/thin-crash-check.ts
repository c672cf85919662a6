// The invariants thin-crash.test.ts asserts after each kill and reopen, and the model of the
// layers it asserts them against: what the children acknowledged (their event logs).
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { type ChildEvent, contentOf, type Op, sha256 } from './thin-crash-ops.js';
import { dmsetup, thinDevicesOf } from './thin-support.js';

/**
 * Layers by what was acknowledged: `present` must exist with these files (each layer's own and
 * those inherited from its origin at the snapshot), `gone` must not exist; an operation a kill
 * interrupted is pending until a reopen shows whether it happened.
 */
export interface LayerModel {
  present: Map<string, string[]>;
  gone: Set<string>;
  /** Interrupted creates: the files they would hold. */
  pendingCreate: Map<string, string[]>;
  pendingDelete: Set<string>;
  /** Layers whose files were read back since they last changed (a full check reads all again). */
  verified: Set<string>;
  /** Thin ids another user of the pool took (the metadata never holds them). */
  foreign: Set<number>;
}

/** Runs `fn`, adding its time to the phase `name`. */
export type Timer = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

export function emptyModel(): LayerModel {
  return {
    present: new Map(),
    gone: new Set(),
    pendingCreate: new Map(),
    pendingDelete: new Set(),
    verified: new Set(),
    foreign: new Set(),
  };
}

function filesOf(model: LayerModel, hash: string): string[] {
  if (hash === '') return [];
  const pending = model.pendingCreate.get(hash);
  if (pending) {
    // A later child acted on it: the interrupted create happened.
    model.pendingCreate.delete(hash);
    model.present.set(hash, pending);
  }
  const files = model.present.get(hash);
  if (!files) throw new Error(`the model has no layer ${hash}`);
  return files;
}

/** Fold a child's begin/ack events into the model. */
export function applyEvents(model: LayerModel, events: ChildEvent[]): void {
  for (const e of events) {
    if (e.ev === 'begin') {
      const op = e.op;
      if (op.op === 'create') model.pendingCreate.set(op.hash, [...filesOf(model, op.from)]);
      else if (op.op === 'delete') model.pendingDelete.add(op.hash);
      else if (op.op === 'write' || op.op === 'mount' || op.op === 'activate') filesOf(model, op.hash);
    } else if (e.ev === 'ack') {
      const op = e.op;
      if (op.op === 'create') {
        model.present.set(op.hash, model.pendingCreate.get(op.hash)!);
        model.pendingCreate.delete(op.hash);
      } else if (op.op === 'delete') {
        model.pendingDelete.delete(op.hash);
        if (e.result !== 'refused') {
          model.present.delete(op.hash);
          model.gone.add(op.hash);
        }
      } else if (op.op === 'write') {
        filesOf(model, op.hash).push(op.file);
        model.verified.delete(op.hash);
      } else if (op.op === 'foreign' && e.foreignId !== undefined) {
        model.foreign.add(e.foreignId);
      }
    }
  }
}

/** What an interrupted operation leaves if it took effect; undefined: nothing durable to look at. */
export function effectOf(set: DeviceSet, op: Op): boolean | undefined {
  switch (op.op) {
    case 'create':
      return set.hasDevice(op.hash);
    case 'delete':
      return !set.deviceRecords().some((r) => r.hash === op.hash);
    case 'resize':
      return poolDataBytes(set.poolName) === BigInt(op.bytes);
    default:
      return undefined;
  }
}

/** The pool's data size from its live table (dmsetup: an oracle apart from ours). */
export function poolDataBytes(poolName: string): bigint {
  return BigInt(dmsetup('table', poolName).split(/\s+/)[1]!) * 512n;
}

/** Mount a layer, write `file` (contentOf), fsync, unmount. */
export async function writeLayerFile(set: DeviceSet, mnt: string, hash: string, file: string): Promise<void> {
  const dir = join(mnt, hash);
  await set.mountDevice(hash, dir, '', { createMountPoint: true });
  const fd = openSync(join(dir, file), 'wx');
  writeSync(fd, contentOf(file));
  fsyncSync(fd);
  closeSync(fd);
  await set.unmountDevice(hash);
}

/**
 * Reopen `home` (reconcile) and assert: the live pool's thin ids (its metadata read through a
 * metadata snapshot) are exactly our records'; the pool's, its metadata's and our transaction ids agree; no
 * intent is left; none of the home's devices is suspended; the base is initialized; every layer
 * the model has is there, and none it has deleted; the files of every layer new or written since
 * the last check (`full`: of every layer) have their content. Pending operations of the model are
 * settled by what the reopened pool holds. Returns the open set.
 */
export async function checkReopened(
  home: string,
  options: string[],
  model: LayerModel,
  full = false,
  timed: Timer = (_, fn) => fn(),
): Promise<DeviceSet> {
  const set = await timed('open', () => DeviceSet.open(home, options));
  try {
    const records = set.deviceRecords();
    const dm = DeviceMapper.open({ udev: 'off' });
    try {
      // The pool's metadata read through a metadata snapshot: its transaction is the pool's
      // committed one (the snapshot commits first); the pool's status line says the same, read by
      // dmsetup in a full check (one process less each time).
      const pool = await timed('thin ids', async () => thinDevicesOf(set.poolName, dm));
      const ids = (xs: number[]) => [...xs].sort((a, b) => a - b);
      expect(
        pool.devices.map((d) => d.thinId),
        'thin ids: pool metadata vs our records and the foreign ids',
      ).toEqual(ids([...records.map((r) => r.deviceId), ...model.foreign]));
      expect(pool.transactionId, 'transaction id: pool metadata vs our records').toBe(set.transactionId);
      if (full) {
        expect(BigInt(dmsetup('status', set.poolName).split(' ')[3]!), 'transaction id: pool status vs metadata').toBe(set.transactionId);
      }
      const stem = `${set.naming.stem}-`;
      const suspended = dm.list().filter((d) => d.name.startsWith(stem) && dm.info({ name: d.name })?.suspended);
      expect(suspended.map((d) => d.name)).toEqual([]);
    } finally {
      dm.close();
    }
    expect(existsSync(join(home, 'metadata', 'transaction-metadata')), 'intent left').toBe(false);
    expect(records.find((r) => r.hash === '')?.initialized, 'base initialized').toBe(true);

    for (const [hash, files] of model.pendingCreate) {
      if (set.hasDevice(hash)) model.present.set(hash, files);
      else model.gone.add(hash);
    }
    model.pendingCreate.clear();
    for (const hash of model.pendingDelete) {
      if (!set.hasDevice(hash)) {
        model.present.delete(hash);
        model.gone.add(hash);
      }
    }
    model.pendingDelete.clear();

    expect(
      set.list().filter((h) => model.gone.has(h)),
      'deleted layers back',
    ).toEqual([]);
    const missing = [...model.present.keys()].filter((h) => !set.hasDevice(h));
    expect(missing, 'acknowledged layers missing').toEqual([]);
    for (const [hash, files] of model.present) {
      if (files.length > 0 && (full || !model.verified.has(hash))) await timed('files', () => checkFiles(set, home, hash, files));
      model.verified.add(hash);
    }
    return set;
  } catch (e) {
    await set.close();
    throw e;
  }
}

async function checkFiles(set: DeviceSet, home: string, hash: string, files: string[]): Promise<void> {
  const at = set.mountPoints(hash)[0];
  const dir = at ?? join(`${home}-mnt`, `check-${hash}`);
  if (at === undefined) await set.mountDevice(hash, dir, '', { createMountPoint: true });
  try {
    for (const f of files) {
      expect(sha256(readFileSync(join(dir, f))), `${hash}/${f}`).toBe(sha256(contentOf(f)));
    }
  } finally {
    if (at === undefined) await set.unmountDevice(hash);
  }
}
