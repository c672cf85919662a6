// The pool's thin devices: the formatted base, snapshots, their deletion, and their activation
// as dm devices (`<stem>-<hash>` thin targets on the pool).
//
// Activation is DM_DEV_CREATE, TABLE_LOAD, resume (a crash point after each). A device of the right
// name found by activate is used only if its table is exactly our thin target (pool, thin id,
// length); one a crash left half-made (no table, a table loaded but not resumed, suspended) is
// resumed or, if nothing holds it open, removed and made again. One held open with another table
// is a DeviceTableMismatchError: mounting it or deleting the thin id would act on something else.
// One with a deferred remove pending (deactivated while something held it open) has the remove
// cancelled first: it would otherwise go at its holder's last close, under the new user.
//
// Deletions deferred while their device was busy (records marked `deleted`) are retried by
// retryDeferredDeletes: on open, after every delete and on the device-set's timer; a retry
// discards and deletes as a delete does.
import { setTimeout as sleep } from 'node:timers/promises';
import { discard } from '../blk/index.js';
import { log } from '../ioctl/index.js';
import { DEFAULT_REMOVE_RETRY } from '../dm/index.js';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import type { DeviceName, DeviceRef, ThinId } from '../dm/names.js';
import { parseThinStatus } from '../dm/status/thin.js';
import { parseThinPoolStatus, type ThinPoolStatus } from '../dm/status/thin-pool.js';
import { formatDev } from '../structs/dev.js';
import { type Bytes, bytesToSectors, type Sectors, sectors } from '../structs/units.js';
import { formatTableLine, isThinTarget, type Target, type ThinTarget } from '../dm/targets.js';
import { join } from 'node:path';
import type { CrashPointName } from './crash-points.js';
import {
  DeviceBusyError,
  DeviceExistsError,
  DeviceTableMismatchError,
  errnoOf,
  PoolReadOnlyError,
  PoolStateError,
  UnknownDeviceError,
} from './errors.js';
import { describeHolders } from './holders.js';
import { BASE_HASH, type DeviceRecord } from './metadata-store.js';
import { mkfs } from './mkfs.js';
import type { PoolNaming } from './naming.js';
import type { PoolOptions } from './options.js';
import { checkSpace, readPoolStatus } from './pool-health.js';
import type { DeleteResult, ReadOnlyMode, Transactions } from './transaction.js';
import type { Undo } from './undo.js';

/** A pending deletion that a retry could not complete (a busy device is not one: it just waits). */
export interface DeferredDeleteFailure {
  /** The pending deletion that failed; none when the pool itself refused them all. */
  hash?: string;
  error: unknown;
}

export interface DevStatus {
  deviceId: ThinId;
  sizeBytes: Bytes;
  transactionId: bigint;
  sizeSectors: Sectors;
  mappedSectors: Sectors;
  highestMappedSector: Sectors | null;
}

/**
 * Errors of BLKDISCARD that come before any block is discarded: EBUSY from the O_EXCL open (mounted
 * or claimed), EOPNOTSUPP (no discard support) and EINVAL (a bad range), both checked by the
 * kernel's blk_ioctl_discard before it issues a bio.
 */
const DISCARD_REFUSED = new Set(['EBUSY', 'EOPNOTSUPP', 'EINVAL']);

/** The pool's status mode when it refuses changes: read-only (`ro`) or flagged `needs_check`. */
export function readOnlyModeOf(dm: DeviceMapper, poolName: DeviceName): ReadOnlyMode | undefined {
  const s = readPoolStatus(dm, poolName);
  // A failed pool (Fail, Error) is reported by the transaction protocol's first status read.
  if (s.state !== 'ok') return undefined;
  if (s.needsCheck) return 'needs_check';
  return s.mode === 'ro' ? 'ro' : undefined;
}

/**
 * The pool's status without a flush: thin-pool's status commits the metadata unless told
 * DM_NOFLUSH_FLAG, and these checks (before each activation and delete) should not.
 */
function poolStatusNoFlush(dm: DeviceMapper, poolName: DeviceName): ThinPoolStatus {
  const line = dm.status({ name: poolName }, { noFlush: true })[0];
  if (line?.type !== 'thin-pool') throw new PoolStateError(poolName, 'has no thin-pool target');
  return parseThinPoolStatus(line.params);
}

/** A table that is exactly `want`: one thin target, same pool, thin id and length. */
function isTableOf(table: Target[], want: ThinTarget): boolean {
  const [t] = table;
  return (
    table.length === 1 &&
    t !== undefined &&
    isThinTarget(t) &&
    t.startSector === want.startSector &&
    t.lengthSectors === want.lengthSectors &&
    t.poolDevice === want.poolDevice &&
    t.thinId === want.thinId &&
    t.externalOriginDevice === undefined
  );
}

export class ThinDevices {
  constructor(
    private readonly dm: DeviceMapper,
    private readonly naming: PoolNaming,
    private readonly options: PoolOptions,
    private readonly poolName: DeviceName,
    private readonly tx: Transactions,
    private readonly step: (point: CrashPointName) => void,
  ) {}

  // ---- the base device ---------------------------------------------------------------------------

  async initBase(undo: Undo): Promise<void> {
    let base = this.tx.devices.get(BASE_HASH);
    if (base && !base.initialized) {
      // A crash between create and mkfs: start the base again (as Docker does).
      await this.deactivate(BASE_HASH);
      await this.tx.delete(BASE_HASH);
      base = undefined;
    }
    if (base) return;
    // No dm.min_free_space here: a fresh pool's own metadata may already pass a high threshold,
    // and a pool without its base is of no use; health and out-of-space still apply.
    checkSpace(this.dm, this.poolName, null);
    const rec = await this.tx.create(BASE_HASH, { sizeBytes: this.options.baseSizeBytes });
    undo.push('the base device', async () => {
      await this.deactivate(BASE_HASH);
      await this.tx.delete(BASE_HASH);
    });
    this.step('base:created');
    await this.activate(BASE_HASH);
    this.step('base:activated');
    await mkfs(this.options.fs, this.devicePath(BASE_HASH), this.options.mkfsArgs);
    this.step('base:formatted');
    await this.deactivate(BASE_HASH);
    this.tx.updateDevice({ ...rec, initialized: true, filesystem: this.options.fs });
    this.step('base:initialized');
  }

  // ---- devices -----------------------------------------------------------------------------------

  devicePath(hash: string): string {
    return join(this.dm.mapperDir, this.naming.deviceName(hash));
  }

  record(hash: string): DeviceRecord {
    const r = this.tx.devices.get(hash);
    if (!r || r.deleted) throw new UnknownDeviceError(hash);
    return r;
  }

  /** A snapshot `hash` of `baseHash` ('' = the base device). */
  async add(hash: string, baseHash: string): Promise<void> {
    {
      if (this.tx.devices.has(hash)) throw new DeviceExistsError(hash);
      const origin = this.record(baseHash);
      checkSpace(this.dm, this.poolName, this.options.minFreeSpacePercent);
      const originName = this.naming.deviceName(baseHash);
      await this.tx.create(hash, {
        sizeBytes: origin.sizeBytes,
        origin,
        // dm-thin: an active origin must be suspended while its snapshot is taken.
        aroundMessage: async (send) => {
          const info = this.dm.info({ name: originName });
          // Nothing to quiesce: not active, suspended already, or half-made by a crash (no live
          // table: no I/O reaches the thin id, and resume would answer EINVAL).
          if (info === null || info.suspended || !info.liveTable) return send();
          await this.dm.suspend({ name: originName });
          this.step('snapshot:origin-suspended');
          try {
            await send();
          } finally {
            await this.dm.resume({ name: originName });
          }
        },
      });
    }
  }

  /** Deactivate, discard (dm.blkdiscard) and delete. Busy: deferred (dm.use_deferred_deletion) or DeviceBusyError. */
  async delete(hash: string, mountedAt: string | undefined): Promise<void> {
    const rec = this.record(hash);
    const name = this.naming.deviceName(hash);
    const info = this.dm.info({ name });
    // Busy is decided before the intent and the discard, so a busy device keeps its data.
    if (mountedAt !== undefined || (info && info.openCount > 0)) {
      if (this.options.useDeferredDeletion) {
        this.tx.updateDevice({ ...rec, deleted: true });
        return;
      }
      throw new DeviceBusyError(name, mountedAt !== undefined ? [`mounted on ${mountedAt} by this process`] : describeHolders(info!));
    }
    // A pool that refuses messages would take the intent and the discard, then refuse `delete`.
    this.checkWritable(`delete ${JSON.stringify(hash)}`);
    try {
      await this.destroy(rec, 'delete:deactivated');
    } catch (e) {
      // Refused before anything was destroyed: the device is kept, as when it was busy above.
      if (errnoOf(e) !== 'EBUSY' || this.tx.devices.get(hash)?.deleted !== false) throw e;
      if (this.options.useDeferredDeletion) {
        this.tx.updateDevice({ ...rec, deleted: true });
        return;
      }
      if (e instanceof DeviceBusyError) throw e;
      const now = this.dm.info({ name });
      throw new DeviceBusyError(name, now ? describeHolders(now) : [`${(e as Error).message}`]);
    }
  }

  /**
   * The pool transaction of a delete: once its intent is durable, discard the device's blocks
   * (dm.blkdiscard) and remove its dm device (`deactivated` names that step), then `delete`.
   */
  private destroy(rec: DeviceRecord, deactivated: CrashPointName): Promise<DeleteResult> {
    return this.tx.delete(rec.hash, {
      beforeMessage: async (destroying) => {
        if (this.options.blkDiscard) {
          await this.activate(rec.hash);
          // Returns the blocks to the loop file (a hole); deleting the thin id alone does not.
          // O_EXCL: a device mounted or claimed since the caller's check is found before any block
          // is discarded. From the discard on, the delete only goes forward (a busy device is
          // left as a pending deletion, never as a device of zeros).
          try {
            discard(this.devicePath(rec.hash), 0n, BigInt(rec.sizeBytes), { exclusive: true });
          } catch (e) {
            if (!DISCARD_REFUSED.has(errnoOf(e) ?? '')) destroying();
            throw e;
          }
          destroying();
          this.step('delete:discarded');
        }
        await this.deactivate(rec.hash);
        this.step(deactivated);
      },
    });
  }

  /** A failed, read-only or needs_check pool (which may have become so since open) takes no change. */
  private checkWritable(what: string): void {
    const s = poolStatusNoFlush(this.dm, this.poolName);
    if (s.state !== 'ok') throw new PoolStateError(this.poolName, `status is ${s.state}: the pool has failed; cannot ${what}`);
    if (s.needsCheck) throw new PoolReadOnlyError(this.poolName, 'needs_check', what);
    if (s.mode === 'ro') throw new PoolReadOnlyError(this.poolName, 'ro', what);
  }

  /** Whether some deletion waits for its device to be let go. */
  get hasDeferredDeletes(): boolean {
    for (const rec of this.tx.devices.values()) if (rec.deleted) return true;
    return false;
  }

  /**
   * Deletions deferred while their device was busy: done now (discard included) for those nothing
   * holds open. A device still or again busy stays pending; the others' failures are returned.
   * A read-only pool takes no deletion: they wait for a writable open.
   */
  async retryDeferredDeletes(): Promise<DeferredDeleteFailure[]> {
    const failures: DeferredDeleteFailure[] = [];
    if (this.tx.readOnly !== undefined) return failures;
    try {
      this.checkWritable('retry deferred deletions');
    } catch (e) {
      // They wait for a writable pool; a failed pool is reported, as any failure.
      if (!(e instanceof PoolReadOnlyError)) failures.push({ error: e });
      return failures;
    }
    for (const rec of [...this.tx.devices.values()]) {
      if (!rec.deleted) continue;
      const info = this.dm.info({ name: this.naming.deviceName(rec.hash) });
      if (info && info.openCount > 0) continue;
      try {
        if ((await this.destroy(rec, 'deferred-delete:deactivated')) === 'deferred') continue;
      } catch (e) {
        // Opened again meanwhile: it stays pending for the next retry.
        if (errnoOf(e) !== 'EBUSY') failures.push({ hash: rec.hash, error: e });
        continue;
      }
      this.step('deferred-delete:deleted');
    }
    return failures;
  }

  private thinTarget(rec: DeviceRecord): ThinTarget {
    const pool = this.dm.info({ name: this.poolName });
    if (!pool) throw new PoolStateError(this.poolName, 'the pool device is gone');
    const poolDevice = formatDev(pool.dev);
    return {
      type: 'thin',
      startSector: sectors(0),
      lengthSectors: bytesToSectors(rec.sizeBytes),
      poolDevice,
      thinId: rec.deviceId,
    };
  }

  /**
   * Make /dev/mapper/<name> for a device (no-op when active with its thin target; a half-made one is
   * repaired). On a read-only pool the device is read-only. `known`: the device's DM_DEV_STATUS
   * (null: absent) the caller read just before, in the same turn of the queue, so it is not asked twice.
   */
  async activate(hash: string, known?: DeviceInfo | null): Promise<DeviceInfo> {
    const rec = this.tx.devices.get(hash);
    if (!rec) throw new UnknownDeviceError(hash);
    const name = this.naming.deviceName(hash);
    const want = this.thinTarget(rec);
    let found = known === undefined ? this.dm.info({ name }) : known;
    if (found?.deferredRemove) found = await this.cancelDeferredRemove(found);
    if (found) {
      const ready = await this.reuse({ name }, found, want);
      if (ready) return ready;
    }
    // The pool's mode now, as it may have changed since open: dm-thin refuses a thin device on a
    // failed pool; on a read-only one the device is read-only, as on a pool opened read-only.
    const pool = poolStatusNoFlush(this.dm, this.poolName);
    if (pool.state !== 'ok') throw new PoolStateError(this.poolName, `status is ${pool.state}: no thin device can be activated`);
    const readOnly = this.tx.readOnly !== undefined || pool.mode === 'ro' || pool.needsCheck;
    await this.dm.create(name);
    this.step('activate:created');
    try {
      this.dm.loadTable({ name }, [want], { readOnly });
      this.step('activate:loaded');
      const live = await this.dm.resume({ name });
      this.step('activate:resumed');
      return live;
    } catch (e) {
      // As libdevmapper's create: a device whose table the kernel refused is removed again; the
      // load's (or resume's) error is the one to report.
      await this.dm.remove({ name }, { retry: true }).catch(() => undefined);
      throw this.failedPoolError(e);
    }
  }

  /**
   * Cancel a pending deferred remove (dm-ioctl's `@cancel_deferred_remove` message): the device
   * stays when its holder closes it. ENXIO: it went already. EBUSY: its remove is under way
   * (DMF_DELETING): wait for it to go. Null when the device is gone, to be made again.
   */
  private async cancelDeferredRemove(info: DeviceInfo): Promise<DeviceInfo | null> {
    const ref = { name: info.name };
    try {
      this.dm.cancelDeferredRemove(ref);
      return this.dm.info(ref);
    } catch (e) {
      if (errnoOf(e) === 'ENXIO') return null;
      if (errnoOf(e) !== 'EBUSY') throw e;
    }
    const { attempts, firstDelayMs, maxDelayMs } = DEFAULT_REMOVE_RETRY;
    for (let i = 0; i < attempts; i++) {
      await sleep(Math.min(firstDelayMs * 2 ** i, maxDelayMs));
      if (this.dm.info(ref) === null) return null;
    }
    throw new DeviceBusyError(info.name, ['its deferred remove is under way and has not completed']);
  }

  /**
   * dm-thin refuses a thin target on a failed pool ("Pool is in fail mode", EINVAL): a pool that
   * failed after the check above is named rather than the bare errno.
   */
  private failedPoolError(e: unknown): unknown {
    try {
      const s = poolStatusNoFlush(this.dm, this.poolName);
      if (s.state !== 'ok') {
        return new PoolStateError(this.poolName, `status is ${s.state}: no thin device can be activated (${(e as Error).message})`);
      }
    } catch {
      // The pool's status cannot be read: the activation's own error says more.
    }
    return e;
  }

  /** An existing device of the name: ours (resumed if need be), or removed (null) if nothing holds it. */
  private async reuse(ref: DeviceRef, info: DeviceInfo, want: ThinTarget): Promise<DeviceInfo | null> {
    if (info.liveTable && isTableOf(this.dm.table(ref), want)) {
      return info.suspended ? this.dm.resume(ref) : info;
    }
    if (!info.liveTable && info.inactiveTable && isTableOf(this.dm.table(ref, { inactive: true }), want)) {
      // A crash between TABLE_LOAD and resume.
      return this.dm.resume(ref);
    }
    if (info.openCount > 0) {
      const found = info.liveTable ? `table ${this.dm.table(ref).map(formatTableLine).join('; ')}` : 'no table';
      throw new DeviceTableMismatchError(info.name, found, describeHolders(info));
    }
    log.info('activate: removing a half-made device to make it again', { device: info.name });
    // Resumed first so that nothing waits on it, as the sweeper does.
    if (info.suspended) await this.dm.resume(ref).catch(() => undefined);
    await this.dm.remove(ref, { retry: true });
    return null;
  }

  /**
   * Remove the dm device (the thin id stays); one that is not there (ENXIO: never activated, or gone
   * already) is done. Busy after retries: DeviceBusyError naming holders.
   */
  async deactivate(hash: string): Promise<void> {
    const name = this.naming.deviceName(hash);
    try {
      await this.dm.remove({ name }, { retry: true, ...(this.options.useDeferredRemoval ? { deferred: true } : {}) });
    } catch (e) {
      if (errnoOf(e) === 'ENXIO') return;
      if (errnoOf(e) !== 'EBUSY') throw e;
      const now = this.dm.info({ name });
      throw new DeviceBusyError(name, now ? describeHolders(now) : []);
    }
  }

  /** Mapped and highest mapped sectors (activates the device for the query if it was not). */
  async status(hash: string): Promise<DevStatus> {
    {
      const rec = this.record(hash);
      const name = this.naming.deviceName(hash);
      const wasActive = this.dm.info({ name }) !== null;
      await this.activate(hash);
      try {
        const line = this.dm.status({ name })[0];
        if (line?.type !== 'thin') throw new PoolStateError(this.poolName, `${name} has no thin target`);
        const s = parseThinStatus(line.params);
        if (s.state !== 'ok') throw new PoolStateError(this.poolName, `${name} status is ${s.state}`);
        return {
          deviceId: rec.deviceId,
          sizeBytes: rec.sizeBytes,
          transactionId: rec.transactionId,
          sizeSectors: bytesToSectors(rec.sizeBytes),
          mappedSectors: s.mappedSectors,
          highestMappedSector: s.highestMappedSector,
        };
      } finally {
        if (!wasActive) await this.deactivate(hash);
      }
    }
  }
}
