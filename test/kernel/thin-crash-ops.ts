// What thin-crash.test.ts and its child (thin-crash-child.ts) share: the child's orders, the lines
// it appends to its event log, the content of the files written into layers, and a seeded PRNG
// for the random schedules.
import { createHash } from 'node:crypto';

/** One operation of the pool manager, as the child runs it. */
export type Op =
  | { op: 'create'; hash: string; from: string }
  | { op: 'delete'; hash: string }
  | { op: 'mount'; hash: string }
  | { op: 'unmount'; hash: string }
  | { op: 'activate'; hash: string }
  | { op: 'deactivate'; hash: string }
  /** Mount, write `file` (contentOf(file)), fsync, unmount. */
  | { op: 'write'; hash: string; file: string }
  /** Grow the data to `bytes`, and the metadata to `metadata` when given. */
  | { op: 'resize'; bytes: string; metadata?: string }
  /** Shut the pool down and open it again (with the hook): deferred deletes are retried. */
  | { op: 'reopen' }
  /** Another user of the pool takes the id the metadata would give next (create_thin): the next create skips it. */
  | { op: 'foreign' };

export interface ChildSpec {
  home: string;
  /** Mount points are `<mnt>/<hash>`. */
  mnt: string;
  options: string[];
  /** The event log, appended to with write(2): what a SIGKILL cannot take back. */
  log: string;
  /** Kill at the k-th counted hook hit (1-based); 0: never. */
  killAt: number;
  /** Or kill at the first counted hit of this point. */
  killAtPoint?: string;
  /**
   * Hits count from operation `countFrom` on (earlier ones only prepare); -1: from the start of
   * the first DeviceSet.open (pool set-up, reconcile, the base, deferred deletes).
   */
  countFrom: number;
  ops: Op[];
  /** Then this many random operations (randomOp), named `<prefix><n>`. */
  random?: { seed: number; count: number; prefix: string };
  /** As a new pool is made (open:pool-created), another user takes thin id 0: the base must skip it. */
  foreignAtPoolCreated?: boolean;
}

/**
 * Event log lines, one JSON object each:
 *   {ev:'hit', point, counted}  a hook call (written before a kill there)
 *   {ev:'open'}                 the first open resolved
 *   {ev:'begin', op}            an operation starts
 *   {ev:'ack', op, result}      it completed: 'ok', or 'refused' (DeviceBusyError), or 'deferred'
 *                               (a `foreign` op: with the thin id it took)
 *   {ev:'done'}                 every operation completed
 */
export type ChildEvent =
  | { ev: 'hit'; point: string; counted: boolean }
  | { ev: 'open' }
  | { ev: 'begin'; op: Op }
  | { ev: 'ack'; op: Op; result: 'ok' | 'refused' | 'deferred'; foreignId?: number }
  | { ev: 'done' };

export function parseEvents(text: string): ChildEvent[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as ChildEvent);
}

/** 64 KiB that depend only on the file's name: the parent recomputes them to check a layer. */
export function contentOf(file: string): Buffer {
  const block = createHash('sha256').update(file).digest();
  return Buffer.concat(Array.from({ length: 2048 }, () => block));
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export { prng } from '../support/prng.js';

export function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)]!;
}

/** What a random operation may act on: the pool's layers now, and which of them are mounted. */
export interface PoolView {
  layers: string[];
  mounted: Set<string>;
  dataBytes: bigint;
}

/** The largest data file a random schedule grows the pool to. */
export const RESIZE_LIMIT = 512n << 20n;
export const RESIZE_STEP = 64n << 20n;

/** One random operation valid in `view`: create, snapshot, write, mount, unmount, activate, delete, resize. */
export function randomOp(rand: () => number, view: PoolView, newName: () => string): Op {
  const unmounted = view.layers.filter((h) => !view.mounted.has(h));
  const choices: (() => Op)[] = [() => ({ op: 'create', hash: newName(), from: '' })];
  if (view.layers.length > 0) {
    choices.push(() => ({ op: 'create', hash: newName(), from: pick(rand, view.layers) }));
    choices.push(() => ({ op: 'create', hash: newName(), from: pick(rand, view.layers) }));
  }
  if (unmounted.length > 0) {
    choices.push(() => {
      const hash = pick(rand, unmounted);
      return { op: 'write', hash, file: `${newName()}.bin` };
    });
    choices.push(() => ({ op: 'mount', hash: pick(rand, unmounted) }));
    choices.push(() => ({ op: 'activate', hash: pick(rand, unmounted) }));
    choices.push(() => ({ op: 'delete', hash: pick(rand, unmounted) }));
    choices.push(() => ({ op: 'delete', hash: pick(rand, unmounted) }));
  }
  if (view.mounted.size > 0) {
    choices.push(() => ({ op: 'unmount', hash: pick(rand, [...view.mounted]) }));
    // Busy: refused (DeviceBusyError), or marked for a later delete with dm.use_deferred_deletion.
    choices.push(() => ({ op: 'delete', hash: pick(rand, [...view.mounted]) }));
  }
  if (view.dataBytes + RESIZE_STEP <= RESIZE_LIMIT && rand() < 0.3) {
    choices.push(() => ({ op: 'resize', bytes: String(view.dataBytes + RESIZE_STEP) }));
  }
  return pick(rand, choices)();
}
