// The pool's thin devices: the formatted base, snapshots, their deletion, and their activation
// as dm devices (`<stem>-<hash>` thin targets on the pool).
import { discard } from '../blk/index.js';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import type { DeviceName, ThinId } from '../dm/names.js';
import { parseThinStatus } from '../dm/status/thin.js';
import { formatDev } from '../structs/dev.js';
import { type Bytes, bytesToSectors, type Sectors, sectors } from '../structs/units.js';
import type { ThinTarget } from '../dm/targets.js';
import { join } from 'node:path';
import type { CrashPointName } from './crash-points.js';
import { DeviceBusyError, DeviceExistsError, errnoOf, PoolStateError, UnknownDeviceError } from './errors.js';
import { describeHolders } from './holders.js';
import { BASE_HASH, type DeviceRecord } from './metadata-store.js';
import { mkfs } from './mkfs.js';
import type { PoolNaming } from './naming.js';
import type { PoolOptions } from './options.js';
import { checkSpace } from './pool-health.js';
import type { Transactions } from './transaction.js';
import type { Undo } from './undo.js';

export interface DevStatus {
  deviceId: ThinId;
  sizeBytes: Bytes;
  transactionId: bigint;
  sizeSectors: Sectors;
  mappedSectors: Sectors;
  highestMappedSector: Sectors | null;
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
          if (info === null || info.suspended) return send();
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
    await this.tx.delete(hash, {
      beforeMessage: async () => {
        if (this.options.blkDiscard) {
          await this.activate(hash);
          // Returns the blocks to the loop file (a hole); deleting the thin id alone does not.
          discard(this.devicePath(hash), 0n, BigInt(rec.sizeBytes));
          this.step('delete:discarded');
        }
        await this.deactivate(hash);
        this.step('delete:deactivated');
      },
    });
  }

  async retryDeferredDeletes(): Promise<void> {
    for (const rec of [...this.tx.devices.values()]) {
      if (!rec.deleted) continue;
      const info = this.dm.info({ name: this.naming.deviceName(rec.hash) });
      if (info && info.openCount > 0) continue;
      if (info) await this.dm.remove({ name: info.name }, { retry: true });
      await this.tx.delete(rec.hash);
    }
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

  /** Make /dev/mapper/<name> for a device (no-op when active). */
  async activate(hash: string): Promise<DeviceInfo> {
    const rec = this.tx.devices.get(hash);
    if (!rec) throw new UnknownDeviceError(hash);
    const name = this.naming.deviceName(hash);
    const info = this.dm.info({ name });
    if (info) return info;
    return this.dm.create(name, { table: [this.thinTarget(rec)] });
  }

  /** Remove the dm device (the thin id stays). Busy after retries: DeviceBusyError naming holders. */
  async deactivate(hash: string): Promise<void> {
    const name = this.naming.deviceName(hash);
    const info = this.dm.info({ name });
    if (!info) return;
    try {
      await this.dm.remove({ name }, { retry: true, ...(this.options.useDeferredRemoval ? { deferred: true } : {}) });
    } catch (e) {
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
