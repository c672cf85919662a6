// The thin-pool manager (the seed's DeviceSet): a pool in a home folder, a formatted base device,
// snapshots of it, and their activation and mounting. Every change of the pool's thin ids goes
// through Transactions (transaction.ts); this module adds the dm devices around them.
import { mkdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { discard } from '../blk/index.js';
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { parseThinPoolStatus, type ThinPoolStatus } from '../dm/status/thin-pool.js';
import { parseThinStatus } from '../dm/status/thin.js';
import { isThinPoolTarget, type ThinTarget } from '../dm/targets.js';
import { createSnap, createThin, deleteThin, setTransactionId } from '../dm/thin-messages.js';
import { findLoopByFile, setLoopCapacity } from '../loop/index.js';
import { DeviceBusyError, NotMountedError, PoolSpaceError, PoolStateError, UnknownDeviceError, DeviceExistsError, OptionError } from './errors.js';
import { describeHolders } from './holders.js';
import { HomeLock } from './lock.js';
import { BASE_HASH, MetadataStore, validateHash, type DeviceRecord, type Intent } from './metadata-store.js';
import { mkfs } from './mkfs.js';
import { mount, mountOptionsFor, mountsOf, mountTable, unmountRetrying, type MountEntry } from './mount.js';
import { PoolNaming } from './naming.js';
import { parsePoolOptions, type ParseEnv, type PoolOptions, type PoolOptionsInput } from './options.js';
import { METADATA_BLOCK_BYTES, SECTOR_BYTES, poolTable, setUpPool, type PoolDevices } from './pool-setup.js';
import { Transactions, type PoolMessenger, type ReconcileResult } from './transaction.js';

/** Steps a test can stop at: transaction steps as `<op>:<point>`, and the device-set's own. */
export type DeviceSetHook = (point: string) => void;

export interface DeviceSetExtras extends ParseEnv {
  /** A DeviceMapper to use (tests wrap its transport); default DeviceMapper.open(). */
  dm?: DeviceMapper;
  hook?: DeviceSetHook;
}

export interface DevStatus {
  deviceId: number;
  sizeBytes: number;
  transactionId: bigint;
  sizeSectors: bigint;
  mappedSectors: bigint;
  highestMappedSector: bigint | null;
}

export interface DiskUsage {
  usedBytes: bigint;
  totalBytes: bigint;
}

export interface PoolStatus {
  poolName: string;
  dataFile: string;
  metadataFile: string;
  dataDevice: string;
  metadataDevice: string;
  data: DiskUsage;
  metadata: DiskUsage;
  /** The pool's data block size in bytes (Docker calls it SectorSize). */
  sectorSizeBytes: number;
  transactionId: bigint;
  state: ThinPoolStatus['state'];
  mode?: 'rw' | 'ro' | 'out_of_data_space';
  needsCheck?: boolean;
}

const codeOf = (e: unknown): unknown => (e as { code?: unknown } | null)?.code;

export class DeviceSet {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly mounts = new Map<string, { path: string; count: number }>();
  private closed = false;

  private constructor(
    readonly home: string,
    readonly options: PoolOptions,
    readonly naming: PoolNaming,
    private readonly dm: DeviceMapper,
    private readonly lock: HomeLock,
    private readonly pool: PoolDevices,
    private readonly tx: Transactions,
    readonly reconciled: ReconcileResult,
    private readonly hook: DeviceSetHook | undefined,
    private readonly ownsDm: boolean,
  ) {}

  get poolName(): string {
    return this.pool.poolName;
  }

  /** Open (creating if needed) the pool in `home`. Every option is validated before anything is touched. */
  static async open(home: string, options: readonly string[] | PoolOptionsInput = {}, extras: DeviceSetExtras = {}): Promise<DeviceSet> {
    const opts = parsePoolOptions(options, extras);
    // Docker's layout: loop files in <home>/devicemapper/, metadata files in <home>/metadata/.
    const root = join(home, 'devicemapper');
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const lock = HomeLock.acquire(join(home, 'lock'));
    let dm: DeviceMapper | undefined;
    try {
      const naming = PoolNaming.forHome(home, opts.prefix);
      dm = extras.dm ?? DeviceMapper.open();
      const store = MetadataStore.open(join(home, 'metadata'));
      const newPool = store.readPoolState() === null;
      const poolName = opts.thinPoolDevice ?? naming.poolName();
      const pool = await setUpPool(dm, root, poolName, opts, newPool);
      const hook = extras.hook;
      const { tx, reconciled } = await Transactions.open(store, poolMessenger(dm, poolName), {
        ...(hook ? { hook: (op, point) => hook(`${op}:${point}`) } : {}),
        prepare: (intent) => prepareReconcile(dm!, naming, intent),
      });
      const set = new DeviceSet(home, opts, naming, dm, lock, pool, tx, reconciled, hook, !extras.dm);
      await set.initBase();
      await set.retryDeferredDeletes();
      return set;
    } catch (e) {
      lock.release();
      if (!extras.dm) dm?.close();
      throw e;
    }
  }

  /** Serialize public operations (one pool transaction at a time). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new PoolStateError(this.poolName, 'the device set is shut down'));
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private step(point: string): void {
    this.hook?.(point);
  }

  private poolStatus(): ThinPoolStatus {
    return readPoolStatus(this.dm, this.poolName);
  }

  // ---- the base device ---------------------------------------------------------------------------

  private async initBase(): Promise<void> {
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
    this.checkSpace(false);
    const rec = await this.tx.create(BASE_HASH, { sizeBytes: this.options.baseSizeBytes });
    this.step('base:created');
    await this.activate(BASE_HASH);
    this.step('base:activated');
    await mkfs(this.options.fs, this.devicePath(BASE_HASH), this.options.mkfsArgs);
    this.step('base:formatted');
    await this.deactivate(BASE_HASH);
    this.tx.updateDevice({ ...rec, initialized: true });
    this.step('base:initialized');
  }

  // ---- devices -----------------------------------------------------------------------------------

  devicePath(hash: string): string {
    return join(this.dm.mapperDir, this.naming.deviceName(hash));
  }

  private record(hash: string): DeviceRecord {
    const r = this.tx.devices.get(hash);
    if (!r || r.deleted) throw new UnknownDeviceError(hash);
    return r;
  }

  /** A snapshot `hash` of `baseHash` ('' = the base device). */
  async addDevice(hash: string, baseHash: string = BASE_HASH): Promise<void> {
    // Validate before anything: the hash and the dm name it makes.
    validateHash(hash);
    this.naming.deviceName(hash);
    return this.serial(async () => {
      if (this.tx.devices.has(hash)) throw new DeviceExistsError(hash);
      const origin = this.record(baseHash);
      this.checkSpace();
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
    });
  }

  /** Deactivate, discard (dm.blkdiscard) and delete. Busy: deferred (dm.use_deferred_deletion) or DeviceBusyError. */
  async deleteDevice(hash: string): Promise<void> {
    validateHash(hash);
    return this.serial(() => this.deleteLocked(hash));
  }

  private async deleteLocked(hash: string): Promise<void> {
    const rec = this.record(hash);
    const name = this.naming.deviceName(hash);
    const m = this.mounts.get(hash);
    const info = this.dm.info({ name });
    // Busy is decided before the intent and the discard, so a busy device keeps its data.
    if (m || (info && info.openCount > 0)) {
      if (this.options.useDeferredDeletion) {
        this.tx.updateDevice({ ...rec, deleted: true });
        return;
      }
      throw new DeviceBusyError(name, m ? [`mounted on ${m.path} by this process`] : describeHolders(info!));
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

  private async retryDeferredDeletes(): Promise<void> {
    for (const rec of [...this.tx.devices.values()]) {
      if (!rec.deleted) continue;
      const info = this.dm.info({ name: this.naming.deviceName(rec.hash) });
      if (info && info.openCount > 0) continue;
      if (info) await this.dm.remove({ name: info.name }, { retry: true });
      await this.tx.delete(rec.hash);
    }
  }

  private thinTarget(rec: DeviceRecord): ThinTarget {
    return { type: 'thin', startSector: 0n, lengthSectors: BigInt(rec.sizeBytes / SECTOR_BYTES), poolDevice: this.poolDevice(), thinId: rec.deviceId };
  }

  private poolDevice(): string {
    const info = this.dm.info({ name: this.pool.poolName });
    if (!info) throw new PoolStateError(this.poolName, 'the pool device is gone');
    return `${info.dev.major}:${info.dev.minor}`;
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
      if (codeOf(e) !== 'EBUSY') throw e;
      const now = this.dm.info({ name });
      throw new DeviceBusyError(name, now ? describeHolders(now) : []);
    }
  }

  activateDevice(hash: string): Promise<DeviceInfo> {
    return this.serial(() => this.activate(hash));
  }

  deactivateDevice(hash: string): Promise<void> {
    return this.serial(() => this.deactivate(hash));
  }

  mountDevice(hash: string, path: string, mountLabel = ''): Promise<void> {
    return this.serial(async () => {
      this.record(hash);
      const target = resolve(path);
      const m = this.mounts.get(hash);
      if (m) {
        if (m.path !== target) throw new DeviceBusyError(this.naming.deviceName(hash), [`already mounted on ${m.path}`]);
        m.count++;
        return;
      }
      // Mounted by an earlier process (a CLI call): the kernel's mount table says so, not our memory.
      const already = this.mountPoints(hash);
      if (already.includes(target)) {
        this.mounts.set(hash, { path: target, count: 1 });
        return;
      }
      if (already.length > 0) throw new DeviceBusyError(this.naming.deviceName(hash), [`already mounted on ${already.join(', ')}`]);
      await this.activate(hash);
      const dev = this.devicePath(hash);
      mount(dev, target, this.options.fs, mountOptionsFor(this.options.fs, this.options.mountOptions, mountLabel));
      this.mounts.set(hash, { path: target, count: 1 });
      if (this.options.xfsNoSpaceMaxRetries !== undefined) this.setXfsRetries(hash);
    });
  }

  /** Where the device is mounted now, from the kernel's mount table (any process's mounts). */
  mountPoints(hash: string, table: MountEntry[] = mountTable()): string[] {
    const info = this.dm.info({ name: this.naming.deviceName(hash) });
    if (!info) return [];
    return mountsOf(`${info.dev.major}:${info.dev.minor}`, table).map((e) => e.mountPoint);
  }

  private setXfsRetries(hash: string): void {
    const info = this.dm.info({ name: this.naming.deviceName(hash) });
    if (!info) return;
    writeFileSync(`/sys/fs/xfs/dm-${info.dev.minor}/error/metadata/ENOSPC/max_retries`, String(this.options.xfsNoSpaceMaxRetries));
  }

  /**
   * Drop one mount of ours (counted); the last one unmounts and deactivates. A device mounted by an
   * earlier process is unmounted wherever the kernel's mount table has it.
   */
  unmountDevice(hash: string): Promise<void> {
    return this.serial(async () => {
      const m = this.mounts.get(hash);
      if (m && --m.count > 0) return;
      this.mounts.delete(hash);
      const paths = new Set(this.mountPoints(hash));
      if (m) paths.add(m.path);
      if (paths.size === 0) {
        if (!this.tx.devices.has(hash)) throw new UnknownDeviceError(hash);
        throw new NotMountedError(hash);
      }
      for (const path of paths) await this.unmountPath(hash, path);
      await this.deactivate(hash);
    });
  }

  private async unmountPath(hash: string, path: string): Promise<void> {
    try {
      await unmountRetrying(path);
    } catch (e) {
      if (codeOf(e) === 'EBUSY') throw new DeviceBusyError(this.naming.deviceName(hash), [`${path} is in use`]);
      throw e;
    }
  }

  hasDevice(hash: string): boolean {
    const r = this.tx.devices.get(hash);
    return r !== undefined && !r.deleted;
  }

  hasActivatedDevice(hash: string): boolean {
    if (!this.tx.devices.has(hash)) return false;
    return this.dm.info({ name: this.naming.deviceName(hash) }) !== null;
  }

  /** Every device hash but the base's and those whose deletion is pending. */
  list(): string[] {
    return [...this.tx.devices.values()].filter((d) => d.hash !== BASE_HASH && !d.deleted).map((d) => d.hash);
  }

  /** Mapped and highest mapped sectors (activates the device for the query if it was not). */
  getDeviceStatus(hash: string): Promise<DevStatus> {
    return this.serial(async () => {
      const rec = this.record(hash);
      const name = this.naming.deviceName(hash);
      const wasActive = this.dm.info({ name }) !== null;
      await this.activate(hash);
      try {
        const line = this.dm.status({ name })[0];
        if (!line || line.type !== 'thin') throw new PoolStateError(this.poolName, `${name} has no thin target`);
        const s = parseThinStatus(line.params);
        if (s.state !== 'ok') throw new PoolStateError(this.poolName, `${name} status is ${s.state}`);
        return {
          deviceId: rec.deviceId,
          sizeBytes: rec.sizeBytes,
          transactionId: rec.transactionId,
          sizeSectors: BigInt(rec.sizeBytes / SECTOR_BYTES),
          mappedSectors: s.mappedSectors,
          highestMappedSector: s.highestMappedSector,
        };
      } finally {
        if (!wasActive) await this.deactivate(hash);
      }
    });
  }

  status(): PoolStatus {
    const s = this.poolStatus();
    const out: PoolStatus = {
      poolName: this.poolName,
      dataFile: this.pool.dataFile ?? '',
      metadataFile: this.pool.metadataFile ?? '',
      dataDevice: this.pool.dataDevice,
      metadataDevice: this.pool.metadataDevice,
      data: { usedBytes: 0n, totalBytes: 0n },
      metadata: { usedBytes: 0n, totalBytes: 0n },
      sectorSizeBytes: this.pool.dataBlockSizeBytes,
      transactionId: this.tx.transactionId,
      state: s.state,
    };
    if (s.state === 'ok') {
      const block = BigInt(this.pool.dataBlockSizeBytes);
      const meta = BigInt(METADATA_BLOCK_BYTES);
      out.data = { usedBytes: s.usedDataBlocks * block, totalBytes: s.totalDataBlocks * block };
      out.metadata = { usedBytes: s.usedMetadataBlocks * meta, totalBytes: s.totalMetadataBlocks * meta };
      out.mode = s.mode;
      out.needsCheck = s.needsCheck;
    }
    return out;
  }

  /** Before a create: the pool must be healthy, writable and above dm.min_free_space. */
  private checkSpace(minFree = true): void {
    const s = this.poolStatus();
    if (s.state !== 'ok') throw new PoolStateError(this.poolName, `status is ${s.state}: the pool has failed`);
    if (s.needsCheck) throw new PoolStateError(this.poolName, 'metadata needs_check: run thin_check/thin_repair');
    if (s.mode === 'out_of_data_space') throw new PoolSpaceError(this.poolName, 'out of data space');
    if (s.mode === 'ro') throw new PoolStateError(this.poolName, 'read-only (metadata error or out of metadata space)');
    if (!minFree) return;
    const min = BigInt(this.options.minFreeSpacePercent);
    const check = (what: string, used: bigint, total: bigint) => {
      if (total === 0n) return;
      const free = total - used;
      if (free * 100n < min * total) {
        throw new PoolSpaceError(this.poolName, `free ${what} space ${free}/${total} blocks is under dm.min_free_space ${min}%`);
      }
    };
    check('data', s.usedDataBlocks, s.totalDataBlocks);
    check('metadata', s.usedMetadataBlocks, s.totalMetadataBlocks);
  }

  /** Grow the loop data file to `sizeBytes` and the pool with it. */
  resizePool(sizeBytes: number): Promise<void> {
    return this.serial(async () => {
      const file = this.pool.dataFile;
      if (!file || !this.pool.owned) throw new OptionError('resizePool', String(sizeBytes), 'only a pool on loop files can be resized');
      const current = statSync(file).size;
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes % this.pool.dataBlockSizeBytes !== 0) {
        throw new OptionError('resizePool', String(sizeBytes), `must be a multiple of the pool block size ${this.pool.dataBlockSizeBytes}`);
      }
      if (sizeBytes <= current) throw new OptionError('resizePool', String(sizeBytes), `the data file is already ${current} bytes; it can only grow`);
      const loop = (await findLoopByFile(file))[0];
      if (!loop) throw new PoolStateError(this.poolName, `no loop device backs ${file}`);
      truncateSync(file, sizeBytes);
      setLoopCapacity(loop);
      const t = this.dm.table({ name: this.poolName })[0];
      if (!t || !isThinPoolTarget(t)) throw new PoolStateError(this.poolName, `the pool's table is not a thin-pool (table: ${t?.type ?? 'none'})`);
      const table = poolTable(t.metadataDevice, t.dataDevice, BigInt(sizeBytes), this.pool.dataBlockSizeBytes);
      table.features = t.features;
      table.lowWaterMarkBlocks = t.lowWaterMarkBlocks;
      // Load into the inactive slot, then suspend and resume to swap it in.
      this.dm.loadTable({ name: this.poolName }, [table]);
      await this.dm.suspend({ name: this.poolName });
      await this.dm.resume({ name: this.poolName });
    });
  }

  /** Unmount and deactivate everything, remove the pool we made (the loops go with it); keep data. */
  shutdown(): Promise<void> {
    return this.serial(async () => {
      this.closed = true;
      try {
        // Ours and those of earlier processes alike: the kernel's mount table is the truth.
        const table = mountTable();
        for (const hash of this.tx.devices.keys()) {
          const paths = new Set(this.mountPoints(hash, table));
          const m = this.mounts.get(hash);
          if (m) paths.add(m.path);
          for (const path of paths) await this.unmountPath(hash, path);
          this.mounts.delete(hash);
        }
        for (const hash of this.tx.devices.keys()) await this.deactivate(hash);
        if (this.pool.owned) {
          const info = this.dm.info({ name: this.poolName });
          if (info) await this.dm.remove({ name: this.poolName }, { retry: true });
        }
      } finally {
        if (this.ownsDm) this.dm.close();
        this.lock.release();
      }
    });
  }

  /** Release the lock and control node without touching devices (for a caller that crashed paths). */
  close(): void {
    this.closed = true;
    if (this.ownsDm) this.dm.close();
    this.lock.release();
  }

  /** The pool's thin ids as the metadata knows them (for tests and `pool` CLI). */
  deviceRecords(): DeviceRecord[] {
    return [...this.tx.devices.values()];
  }

  get transactionId(): bigint {
    return this.tx.transactionId;
  }
}

function readPoolStatus(dm: DeviceMapper, poolName: string): ThinPoolStatus {
  const line = dm.status({ name: poolName })[0];
  if (!line || line.type !== 'thin-pool') throw new PoolStateError(poolName, 'has no thin-pool target');
  return parseThinPoolStatus(line.params);
}

/** The transaction protocol's view of the pool: its status and its messages. */
function poolMessenger(dm: DeviceMapper, poolName: string): PoolMessenger {
  const ref = { name: poolName };
  return {
    poolTransactionId: async () => {
      const s = readPoolStatus(dm, poolName);
      if (s.state !== 'ok') throw new PoolStateError(poolName, `status is ${s.state}`);
      return s.transactionId;
    },
    createThin: async (id) => createThin(dm, ref, id),
    createSnap: async (id, origin) => createSnap(dm, ref, id, origin),
    deleteThin: async (id) => deleteThin(dm, ref, id),
    setTransactionId: async (o, n) => setTransactionId(dm, ref, o, n),
  };
}

/** Before reconcile acts: resume an origin a crash left suspended, and deactivate the intent's
 *  device if nothing holds it (a thin id that is open cannot be deleted). */
async function prepareReconcile(dm: DeviceMapper, naming: PoolNaming, intent: Intent): Promise<void> {
  if (intent.originHash !== undefined) {
    const oi = dm.info({ name: naming.deviceName(intent.originHash) });
    if (oi?.suspended) await dm.resume({ name: oi.name });
  }
  const info = dm.info({ name: naming.deviceName(intent.hash) });
  if (info !== null && info.openCount === 0) await dm.remove({ name: info.name }, { retry: true });
}
