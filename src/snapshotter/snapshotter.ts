// containerd's snapshotter over the pool manager: each snapshot is a thin device of its own
// (`snap-<n>`), a snapshot of its parent's device or of the snapshotter's base, with one record
// (records.ts). Calls on different snapshots run concurrently: a name is claimed in memory, checked
// and claimed in one synchronous step (JavaScript runs one thing at a time), and released when the
// call ends; the pool serializes its own transactions, and nothing else waits on another snapshot.
//
// Crash safety: a Prepare writes its record (creating) before the device, and marks it ready after;
// a Remove marks it removing before the device goes; a Commit is one rename of the record. Open
// finishes or undoes what a crash interrupted (reconcile.ts), then re-activates every active and
// view snapshot (after a reboot their dm devices are gone while the client still holds the mounts).
import { join } from 'node:path';
import { DeviceMapper } from '../dm/index.js';
import { clockRealtimeNs } from '../ioctl/index.js';
import { DeviceSet, type DeviceSetExtras } from '../thin/index.js';
import { ensureBase } from './base.js';
import { SnapshotError } from './errors.js';
import { isBusy, reconcileRecords } from './reconcile.js';
import { BASE_ID, idNumber, idOf, RecordStore, type SnapshotRecord } from './records.js';
import type { CrashPoint, SnapshotterPoint } from './steps.js';
import type { Mount, SnapshotInfo, SnapshotKind, SnapshotterApi, SnapshotUsage } from './types.js';
import { storedLabels, updatedLabels } from './update-mask.js';
import { snapshotUsage } from './usage.js';

/** What open takes beyond the pool's options: a crash hook for tests, a DeviceMapper to share. */
export type SnapshotterExtras = DeviceSetExtras;

/** The records' folder under the pool's home. */
export const RECORDS_DIR = 'snapshots';

export class Snapshotter implements SnapshotterApi {
  /** Every snapshot by name (key or committed name), in any state; the visible ones are `ready`. */
  private readonly byName = new Map<string, SnapshotRecord>();
  /** Names a call in flight works on (made, renamed, removed or relabelled). */
  private readonly claims = new Set<string>();
  private nextId: number;
  private inFlight = 0;
  private idle: (() => void)[] = [];
  private closing: Promise<void> | undefined;

  private constructor(
    readonly home: string,
    private readonly set: DeviceSet,
    private readonly store: RecordStore,
    private readonly dm: DeviceMapper,
    private readonly ownsDm: boolean,
    private readonly hook: ((point: CrashPoint) => void) | undefined,
    records: SnapshotRecord[],
  ) {
    let max = 0;
    for (const r of records) {
      this.byName.set(r.name, r);
      max = Math.max(max, idNumber(r.id) ?? 0);
    }
    for (const hash of set.list()) max = Math.max(max, idNumber(hash) ?? 0);
    this.nextId = max + 1;
  }

  /**
   * Open the snapshotter of `home`: the pool there (DeviceSet.open with `options`, made on first
   * use), the base, the records reconciled with the pool, every active and view snapshot active.
   */
  static async open(home: string, options: readonly string[], extras: SnapshotterExtras = {}): Promise<Snapshotter> {
    const dm = extras.dm ?? DeviceMapper.open();
    let set: DeviceSet | undefined;
    try {
      set = await DeviceSet.open(home, options, { ...extras, dm });
      const hook = extras.hook;
      const step = (point: SnapshotterPoint) => hook?.(point);
      const store = RecordStore.open(join(home, RECORDS_DIR));
      await ensureBase(set, store, home, step);
      const records = await reconcileRecords(set, store, step);
      return new Snapshotter(home, set, store, dm, !extras.dm, hook, records);
    } catch (e) {
      await set?.close();
      if (!extras.dm) dm.close();
      throw e;
    }
  }

  /** The pool's dm name (its devices are `<stem>-snap-<n>`). */
  get poolName(): string {
    return this.set.poolName;
  }

  // ---- calls ---------------------------------------------------------------------------------------

  prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.call(() => this.create('active', key, parent, labels));
  }

  view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.call(() => this.create('view', key, parent, labels));
  }

  mounts(key: string): Promise<Mount[]> {
    return this.call(async () => {
      const rec = this.visible(key);
      if (rec.kind === 'committed')
        throw new SnapshotError('FailedPrecondition', `snapshot ${key} is committed: only active and view snapshots have mounts`);
      // After a reboot (or by hand) the dm device may be gone: its mounts need it.
      await this.set.activate(rec.id);
      return this.mountsOf(rec);
    });
  }

  commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    return this.call(async () => {
      if (name === '') throw new SnapshotError('InvalidArgument', 'a committed snapshot needs a name');
      if (this.byName.has(name) || this.claims.has(name)) throw new SnapshotError('AlreadyExists', `snapshot ${name} already exists`);
      const rec = this.visible(key);
      if (rec.kind !== 'active')
        throw new SnapshotError('FailedPrecondition', `snapshot ${key} is a ${rec.kind} snapshot: only an active one can be committed`);
      this.claim(key);
      this.claims.add(name);
      try {
        const now = clockRealtimeNs();
        const done: SnapshotRecord = { ...rec, name, kind: 'committed', labels: storedLabels(labels), created: now, updated: now };
        this.store.write(done);
        this.byName.delete(key);
        this.byName.set(name, done);
        this.step('snapshotter:commit-recorded');
        // Still mounted by the client: left active (a child snapshot suspends it around create_snap).
        if (this.set.mountPoints(rec.id).length === 0) {
          try {
            await this.set.deactivate(rec.id);
            this.step('snapshotter:commit-deactivated');
          } catch (e) {
            if (!isBusy(e)) throw e;
          }
        }
      } finally {
        this.claims.delete(key);
        this.claims.delete(name);
      }
    });
  }

  remove(key: string): Promise<void> {
    return this.call(async () => {
      const rec = this.visible(key);
      this.claim(key);
      try {
        const child = [...this.byName.values()].find((r) => r.parent === key);
        if (child) throw new SnapshotError('FailedPrecondition', `cannot remove snapshot ${key}: snapshot ${child.name} is its child`);
        const busy = this.set.mountPoints(rec.id);
        if (busy.length > 0)
          throw new SnapshotError('FailedPrecondition', `cannot remove snapshot ${key}: it is mounted on ${busy.join(', ')}`);
        const removing: SnapshotRecord = { ...rec, state: 'removing' };
        this.store.write(removing);
        this.byName.set(key, removing);
        this.step('snapshotter:remove-marked');
        try {
          if (this.set.hasDevice(rec.id)) await this.set.deleteDevice(rec.id);
        } catch (e) {
          if (!isBusy(e)) throw e;
          // Opened meanwhile, nothing destroyed: the snapshot stays as it was.
          this.store.write(rec);
          this.byName.set(key, rec);
          throw new SnapshotError('FailedPrecondition', `cannot remove snapshot ${key}: ${(e as Error).message}`, { cause: e });
        }
        this.step('snapshotter:remove-deleted');
        this.store.remove(rec.id);
        this.byName.delete(key);
        this.step('snapshotter:remove-forgotten');
      } finally {
        this.claims.delete(key);
      }
    });
  }

  stat(key: string): Promise<SnapshotInfo> {
    return this.call(async () => infoOf(this.visible(key)));
  }

  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[]): Promise<SnapshotInfo> {
    return this.call(async () => {
      const rec = this.visible(info.name);
      const labels = updatedLabels(rec.labels, info.labels ?? {}, fieldpaths);
      this.claim(info.name);
      try {
        const done: SnapshotRecord = { ...rec, labels, updated: clockRealtimeNs() };
        this.store.write(done);
        this.byName.set(info.name, done);
        this.step('snapshotter:labels-updated');
        return infoOf(done);
      } finally {
        this.claims.delete(info.name);
      }
    });
  }

  list(): Promise<SnapshotInfo[]> {
    return this.call(async () => [...this.byName.values()].filter((r) => r.state === 'ready').map(infoOf));
  }

  usage(key: string): Promise<SnapshotUsage> {
    return this.call(async () => {
      const rec = this.visible(key);
      const parentId = rec.parent === '' ? BASE_ID : this.byName.get(rec.parent)?.id;
      if (parentId === undefined) throw new SnapshotError('NotFound', `the parent ${rec.parent} of snapshot ${key} is gone`);
      const size = snapshotUsage(this.dm, this.set, rec.id, parentId);
      return { size, inodes: 0n };
    });
  }

  /** Nothing is left to clean: a removal deletes its device or fails, and open finishes what a crash left. */
  cleanup(): Promise<void> {
    return this.call(async () => undefined);
  }

  /** Waits for calls in flight, then lets go of the pool's home (never shutdown: mounts stay). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
      await this.set.close();
      if (this.ownsDm) this.dm.close();
    })();
    return this.closing;
  }

  // ---- helpers -------------------------------------------------------------------------------------

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw new SnapshotError('FailedPrecondition', 'the snapshotter is closed');
    this.inFlight++;
    try {
      return await fn();
    } finally {
      if (--this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
    }
  }

  private step(point: SnapshotterPoint): void {
    this.hook?.(point);
  }

  /** A snapshot that exists (ready); NotFound for any other name. */
  private visible(name: string): SnapshotRecord {
    const rec = this.byName.get(name);
    if (rec?.state !== 'ready') throw new SnapshotError('NotFound', `snapshot ${name} does not exist`);
    return rec;
  }

  /** A name no other call is working on. */
  private claim(name: string): void {
    if (this.claims.has(name)) throw new SnapshotError('FailedPrecondition', `snapshot ${name} is in use by another call`);
    this.claims.add(name);
  }

  private async create(kind: SnapshotKind, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    if (key === '') throw new SnapshotError('InvalidArgument', 'a snapshot needs a key');
    if (this.byName.has(key) || this.claims.has(key)) throw new SnapshotError('AlreadyExists', `snapshot ${key} already exists`);
    let origin = BASE_ID;
    if (parent !== '') {
      const p = this.byName.get(parent);
      if (p?.state !== 'ready' || this.claims.has(parent)) throw new SnapshotError('NotFound', `parent snapshot ${parent} does not exist`);
      if (p.kind !== 'committed') throw new SnapshotError('InvalidArgument', `parent snapshot ${parent} is not committed`);
      origin = p.id;
    }
    const id = idOf(this.nextId++);
    const now = clockRealtimeNs();
    const rec: SnapshotRecord = {
      id,
      state: 'creating',
      name: key,
      parent,
      kind,
      labels: storedLabels(labels),
      created: now,
      updated: now,
    };
    // In the map at once (state creating): the key is taken and the parent has a child from now on.
    this.byName.set(key, rec);
    this.claims.add(key);
    try {
      this.store.write(rec);
      this.step('snapshotter:prepare-recorded');
      await this.set.addDevice(id, origin);
      this.step('snapshotter:prepare-added');
      await this.set.activate(id);
      this.step('snapshotter:prepare-activated');
      const ready: SnapshotRecord = { ...rec, state: 'ready' };
      this.store.write(ready);
      this.byName.set(key, ready);
      this.step('snapshotter:prepare-ready');
      return this.mountsOf(ready);
    } catch (e) {
      await this.undoCreate(rec);
      throw e;
    } finally {
      this.claims.delete(key);
    }
  }

  /** A Prepare or View that failed: its device and record go (what is left, open removes). */
  private async undoCreate(rec: SnapshotRecord): Promise<void> {
    try {
      if (this.set.hasDevice(rec.id)) await this.set.deleteDevice(rec.id);
      this.store.remove(rec.id);
      this.byName.delete(rec.name);
    } catch {
      // The record stays "creating" (invisible, its key taken): the next open deletes both.
    }
  }

  private mountsOf(rec: SnapshotRecord): Mount[] {
    const fs = this.set.deviceRecords().find((r) => r.hash === '')?.filesystem ?? this.set.options.fs;
    const options = [...(rec.kind === 'view' ? ['ro'] : []), ...(fs === 'xfs' ? ['nouuid'] : [])];
    return [{ type: fs, source: this.set.devicePath(rec.id), target: '', options }];
  }
}

function infoOf(r: SnapshotRecord): SnapshotInfo {
  return { name: r.name, parent: r.parent, kind: r.kind, labels: { ...r.labels }, created: r.created, updated: r.updated };
}
