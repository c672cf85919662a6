// Open's agreement of the records with the pool, after a crash or a reboot:
//   creating  (a Prepare or View that never answered) its device, if any, and record are deleted
//   removing  (a Remove that never answered) finished; a device opened since is kept, the record
//             made ready again (nothing was destroyed: the pool refuses before it discards)
//   ready     kept; an active or view snapshot's dm device is made again if it is gone
// A `snap-<n>` device no record names (made by a process whose records were lost) is deleted.
import { log } from '../ioctl/index.js';
import { DeviceBusyError, type DeviceSet } from '../thin/index.js';
import { idNumber, type RecordStore, type SnapshotRecord } from './records.js';
import type { Step } from './steps.js';

/** A device that is held open: its deletion or deactivation was refused before anything changed. */
export function isBusy(e: unknown): boolean {
  return e instanceof DeviceBusyError || (e as { code?: unknown } | null)?.code === 'EBUSY';
}

/** Reconcile and return the records that stay (all ready). */
export async function reconcileRecords(set: DeviceSet, store: RecordStore, step: Step): Promise<SnapshotRecord[]> {
  const kept: SnapshotRecord[] = [];
  for (const rec of store.readAll()) {
    if (rec.state === 'creating') {
      log.info('reconcile: rolling back an unfinished prepare', { snapshot: rec.id, name: rec.name, device: set.hasDevice(rec.id) });
      if (set.hasDevice(rec.id)) {
        await set.deleteDevice(rec.id);
        step('snapshotter:rollback-deleted');
      }
      store.remove(rec.id);
      continue;
    }
    if (rec.state === 'removing') {
      log.info('reconcile: finishing an unfinished remove', { snapshot: rec.id, name: rec.name, device: set.hasDevice(rec.id) });
      if (set.hasDevice(rec.id)) {
        try {
          await set.deleteDevice(rec.id);
        } catch (e) {
          // Held open: kept, unless its deletion is pending in the pool (its blocks went).
          if (!isBusy(e)) throw e;
          if (!set.hasDevice(rec.id)) {
            store.remove(rec.id);
            continue;
          }
          const ready: SnapshotRecord = { ...rec, state: 'ready' };
          store.write(ready);
          kept.push(ready);
          continue;
        }
        step('snapshotter:rollforward-deleted');
      }
      store.remove(rec.id);
      continue;
    }
    kept.push(rec);
  }
  const named = new Set(kept.map((r) => r.id));
  for (const hash of set.list()) {
    if (idNumber(hash) === null || named.has(hash)) continue;
    log.info('reconcile: deleting a device no record names', { device: hash });
    try {
      await set.deleteDevice(hash);
    } catch (e) {
      // Held open by someone: not ours to take away; the next open tries again.
      if (!isBusy(e)) throw e;
      continue;
    }
    step('snapshotter:orphan-deleted');
  }
  for (const rec of kept) {
    if (!set.hasDevice(rec.id)) continue;
    if (rec.kind !== 'committed') await set.activate(rec.id);
    else if (set.hasActivatedDevice(rec.id) && set.mountPoints(rec.id).length === 0) {
      // A crash between a Commit's record and its deactivation.
      await set.deactivate(rec.id).catch((e: unknown) => {
        if (!isBusy(e)) throw e;
      });
    }
  }
  return kept;
}
