// Shared by the snapshotter's kernel tests: mounting what a snapshotter returns with mount(8), as
// containerd's client does, and what the pool holds compared with the records.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { Mount } from '../../src/snapshotter/types.js';
import { oracleLs } from './support/env.js';
import { newHome, sweep, thinIdsOf } from './thin-support.js';
import { DeviceSet } from '../../src/thin/device-set.js';

/** Small pool, every dm name `dmtest-...` (the sweeper's). */
export const SNAP_OPTIONS = [
  'dm.loopdatasize=1G',
  'dm.loopmetadatasize=64M',
  'dm.basesize=64M',
  'dm.prefix=dmtest',
  'dm.min_free_space=0%',
];

/** mount(8) of the one mount a snapshotter returned, on a new folder `dir`. */
export function mountAt(mounts: Mount[], dir: string): void {
  expect(mounts).toHaveLength(1);
  const m = mounts[0]!;
  mkdirSync(dir, { recursive: true });
  const opts = m.options.length > 0 ? ['-o', m.options.join(',')] : [];
  execFileSync('mount', ['-t', m.type, ...opts, m.source, dir]);
}

export function umount(dir: string): void {
  execFileSync('umount', [dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** Every file under `dir` with its content (folders end with '/'), sorted. */
export function tree(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(`${p}/`, ...tree(dir, p));
    else out.push(`${p}=${readFileSync(join(dir, p), 'utf8')}`);
  }
  return out.sort();
}

/** The dm names of the home's snapshot devices that are active now (dmsetup ls). */
export function activeSnapDevices(poolName: string): string[] {
  const stem = poolName.replace(/-pool$/, '');
  return [...oracleLs().keys()].filter((n) => n.startsWith(`${stem}-snap-`)).sort();
}

/**
 * The pool of `home` (closed by its snapshotter first): the thin ids it holds are exactly those our
 * DeviceSet metadata records, and its snapshot devices are exactly `ids` (plus the base).
 */
export async function checkPoolAgrees(home: string, ids: string[]): Promise<void> {
  const set = await DeviceSet.open(home, SNAP_OPTIONS);
  try {
    const recs = set.deviceRecords();
    expect(thinIdsOf(set.poolName)).toEqual(recs.map((r) => r.deviceId as number).sort((a, b) => a - b));
    expect(set.list().sort()).toEqual(['snap-base', ...ids].sort());
  } finally {
    await set.close();
  }
}

export function snapHome(): string {
  return newHome('snap');
}

/** Everything of a test home gone: its pool and devices, its loops, its folder. */
export async function removeSnapHome(home: string): Promise<void> {
  try {
    await DeviceSet.shutdownHome(home, SNAP_OPTIONS);
  } finally {
    await sweep();
    rmSync(home, { recursive: true, force: true });
  }
}
