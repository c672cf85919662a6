// The snapshotter's base: what a parentless Prepare or View snapshots. The pool's own base is a
// fresh mkfs, which shows `lost+found` (containerd's suite compares trees and fails on it) and a
// root whose mode mkfs chose; so a snapshot of it is made once, mounted under the home, cleaned,
// unmounted, and recorded only then. A crash before the record: open deletes it and starts again.
// No mkfs per layer: every parentless snapshot shares these blocks.
import { chmodSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceSet } from '../thin/index.js';
import { clockRealtimeNs } from '../ioctl/index.js';
import { BASE_ID, type RecordStore } from './records.js';
import type { Step } from './steps.js';

/** Where the base is mounted while it is made (inside the home: never a client's /tmp). */
export function baseMountPoint(home: string): string {
  return join(home, 'base-mount');
}

/** Make the base unless its record says it is ready; a half-made one (a crash) is deleted first. */
export async function ensureBase(set: DeviceSet, store: RecordStore, home: string, step: Step): Promise<void> {
  if (store.hasBase() && set.hasDevice(BASE_ID)) return;
  const mnt = baseMountPoint(home);
  if (set.hasDevice(BASE_ID)) {
    // Still mounted by a process that died while making it: ours to unmount.
    if (set.mountPoints(BASE_ID).length > 0) await set.unmountDevice(BASE_ID);
    await set.deleteDevice(BASE_ID);
  }
  rmdirIfThere(mnt);
  await set.addDevice(BASE_ID);
  step('snapshotter:base-added');
  await set.mountDevice(BASE_ID, mnt, '', { createMountPoint: true });
  step('snapshotter:base-mounted');
  rmSync(join(mnt, 'lost+found'), { recursive: true, force: true });
  chmodSync(mnt, 0o755);
  step('snapshotter:base-prepared');
  await set.unmountDevice(BASE_ID);
  rmdirIfThere(mnt);
  step('snapshotter:base-unmounted');
  store.writeBase({ id: BASE_ID, filesystem: set.options.fs, created: clockRealtimeNs() });
  step('snapshotter:base-recorded');
}

function rmdirIfThere(path: string): void {
  try {
    rmdirSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
