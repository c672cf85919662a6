// The thin-pool manager (Docker's devmapper DeviceSet): a pool in a home folder, a formatted base
// device, snapshots of it, and their activation. Every change of the pool's thin ids goes through
// Transactions (transaction.ts); this module adds the dm devices around them. Mounts are tracked in
// mount-tracker.ts, the pool's health and space in pool-health.ts, growth in resize.ts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { parseThinPoolStatus } from '../dm/status/thin-pool.js';
import type { LoopOptions } from '../loop/index.js';
import { log } from '../ioctl/index.js';
import type { DeviceName } from '../dm/names.js';
import type { Bytes } from '../structs/units.js';
import { errnoOf, PoolStateError } from './errors.js';
import type { CrashHook, CrashPointName } from './crash-points.js';
import { checkFixedOptions } from './fixed-options.js';
import { detachLoopsOf, removeByStem, unmountByStem } from './home-teardown.js';
import { checkHomeFolders, HomeLock } from './lock.js';
import { BASE_HASH, MetadataStore, validateHash, type DeviceRecord, type Intent } from './metadata-store.js';
import { adoptDockerHome, convertedRecords, type DockerAdoption } from './docker-home.js';
import { dockerPool, inputOf, openDockerAware, withHomePrefix } from './docker-open.js';
import { checkRetryInterval, RetryTimer } from './deferred-retry.js';
import type { MountEntry } from './mount.js';
import { MountTracker, type MountOptions } from './mount-tracker.js';
import { PoolNaming } from './naming.js';
import { parsePoolOptions, type ParseEnv, type PoolOptions, type PoolOptionsInput } from './options.js';
import { poolMessenger, poolStatusOf, type PoolStatus } from './pool-health.js';
import {
  checkInactivePool,
  readPoolThins,
  readBeforeActivate,
  unknownThinIds,
  type PoolMetadataCheck,
  type PoolThin,
} from './pool-metadata.js';
import { loopFiles, setUpPool, type PoolDevices } from './pool-setup.js';
import { resizePool, type PoolResizeTarget } from './resize.js';
import { readOnlyModeOf, ThinDevices, type DevStatus } from './thin-devices.js';
import { Transactions, type ReconcileResult } from './transaction.js';
import type { ThinId } from '../dm/names.js';
import { makeDirs } from './dirs.js';
import { requireMkfs } from './mkfs.js';
import { Undo } from './undo.js';

export type { DiskUsage, PoolStatus } from './pool-health.js';
export type { MountOptions } from './mount-tracker.js';
export type { DevStatus } from './thin-devices.js';
export type { PoolMetadataCheck, PoolThin } from './pool-metadata.js';
export type { DockerAdoption } from './docker-home.js';

/** What open reconciled, and the pool's thin ids our metadata does not know (pool-metadata.ts unknownThinIds). */
export type OpenReconcile = ReconcileResult & { unknownThinIds: ThinId[] | null };

/** Steps a test can stop at (crash-points.ts): transaction steps as `<op>:<step>`, and the device-set's own. */
export type DeviceSetHook = CrashHook;

export interface DeviceSetExtras extends ParseEnv {
  /** A DeviceMapper to use (tests wrap its transport); default DeviceMapper.open(). */
  dm?: DeviceMapper;
  /** Loop options for attaching the loop files (tests pass a fault-injecting transport). */
  loop?: LoopOptions;
  hook?: DeviceSetHook;
  /**
   * How often deletions deferred while their device was busy are retried, in ms (Docker's driver:
   * 30 s); 0 turns the timer off (they are still retried on open and after every delete). The
   * timer never keeps the process alive and stops at close or shutdown.
   */
  deferredDeleteIntervalMs?: number;
  /** A retried deletion that failed (other than busy: `hash` stays pending), or the retry itself. Default: ignored. */
  onDeferredDeleteError?: (error: unknown, hash?: string) => void;
}

/** What a shutdown did: the mounts it undid. */
export interface ShutdownResult {
  unmounted: { hash: string; path: string }[];
}

/** DeviceSet.shutdownHome: the pool was active and is now down, or was not active at all. */
export type HomeShutdown = ({ active: true } & ShutdownResult) | { active: false; poolName: string };

export class DeviceSet {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly mounts: MountTracker;
  private readonly devices: ThinDevices;
  private closed = false;
  /** Settles when close() or shutdown() has let go of the lock. */
  private done: Promise<void> | undefined;
  /** Retries deferred deletions (extras.deferredDeleteIntervalMs); stopped at close or shutdown. */
  private readonly retryTimer: RetryTimer;
  /** What this open converted of a home made by Docker's devmapper driver (docker-home.ts); null otherwise. */
  dockerAdoption: DockerAdoption | null = null;

  private constructor(
    readonly home: string,
    readonly options: PoolOptions,
    readonly naming: PoolNaming,
    private readonly dm: DeviceMapper,
    private readonly lock: HomeLock,
    private readonly pool: PoolDevices,
    private readonly tx: Transactions,
    readonly reconciled: OpenReconcile,
    private readonly hook: DeviceSetHook | undefined,
    private readonly ownsDm: boolean,
    private readonly onDeferredDeleteError: (error: unknown, hash?: string) => void,
  ) {
    this.devices = new ThinDevices(dm, naming, options, pool.poolName, tx, (point) => this.step(point));
    this.retryTimer = new RetryTimer(
      () => !this.closed && this.devices.hasDeferredDeletes,
      () => this.serial(() => this.retryDeferred()),
      (e) => this.onDeferredDeleteError(e),
    );
    this.mounts = new MountTracker({
      dm,
      naming,
      options,
      requireDevice: (hash) => void this.devices.record(hash),
      knowsDevice: (hash) => this.tx.devices.has(hash),
      devicePath: (hash) => this.devicePath(hash),
      activate: (hash, known) => this.devices.activate(hash, known),
      deactivate: (hash) => this.deactivate(hash),
    });
  }

  get poolName(): DeviceName {
    return this.pool.poolName;
  }

  /**
   * Open (creating if needed) the pool in `home`. Every option is validated before anything is
   * touched; options an existing pool cannot take are refused (PoolOptionConflictError). All or
   * nothing: if it fails, whatever it made (folders, files, loop devices, dm devices, thin ids,
   * metadata) is removed again, newest first.
   */
  static async open(home: string, options: readonly string[] | PoolOptionsInput = {}, extras: DeviceSetExtras = {}): Promise<DeviceSet> {
    const input = inputOf(options);
    const parsed = parsePoolOptions(input, extras);
    const retryMs = checkRetryInterval(extras.deferredDeleteIntervalMs);
    const undo = new Undo();
    let lock: HomeLock | undefined;
    let dm: DeviceMapper | undefined;
    try {
      // Docker's layout: loop files in <home>/devicemapper/, metadata files in <home>/metadata/.
      const root = join(home, 'devicemapper');
      for (const dir of makeDirs(root)) undo.dir(dir);
      const lockPath = join(home, 'lock');
      const newLock = !existsSync(lockPath);
      checkHomeFolders(home);
      lock = HomeLock.acquire(lockPath);
      if (newLock) undo.file(lockPath);
      // A home made by Docker's driver: its names' prefix, and its metadata converted once the pool is up.
      const { opts, docker } = openDockerAware(home, root, input, parsed);
      const naming = PoolNaming.forHome(home, opts.prefix);
      dm = extras.dm ?? DeviceMapper.open();
      const metaDir = join(home, 'metadata');
      for (const dir of makeDirs(metaDir)) undo.dir(dir);
      const store = MetadataStore.open(metaDir);
      const newPool = docker === null && store.readPoolState() === null;
      const poolName = opts.thinPoolDevice ?? naming.poolName();
      const base = docker ? (convertedRecords(docker).find((r) => r.hash === BASE_HASH) ?? null) : store.readDevice(BASE_HASH);
      checkFixedOptions(input, opts, { dm, poolName, root, base });
      if (!base?.initialized) requireMkfs(opts.fs, extras.findExecutable);
      if (newPool) undo.push(`metadata in ${metaDir}`, () => store.forgetPool());
      // As lvm2 runs thin_check: an inactive pool is never activated on metadata that fails it.
      const idsBefore = readBeforeActivate({ dm, poolName, root, opts, newPool });
      const hook = extras.hook;
      const pool = await setUpPool(dm, root, poolName, opts, newPool, undo, extras.loop, (point) => hook?.(point));
      const d = dm;
      const adopted = docker && (await adoptDockerHome(home, docker, dockerPool(d, naming, poolName), undo));
      // A read-only or needs_check pool refuses messages: its intent waits for a writable open,
      // its devices can still be activated and mounted read-only.
      const readOnly = readOnlyModeOf(dm, poolName);
      const { tx, reconciled } = await Transactions.open(store, poolMessenger(dm, poolName), {
        ...(hook ? { hook } : {}),
        prepare: (intent) => prepareReconcile(d, naming, intent),
        poolName,
        ...(readOnly ? { readOnly } : {}),
      });
      const setOpts = readOnly ? { ...opts, mountOptions: [...opts.mountOptions, 'ro'] } : opts;
      // The ids read before activation, less the one Docker's rolled-back transaction deleted.
      const rolledBack = adopted?.transaction?.action === 'rolled-back' ? adopted.transaction.deviceId : null;
      const ids = idsBefore === null ? null : idsBefore.filter((id) => id !== rolledBack);
      const unknown = unknownThinIds(dm, pool, tx.devices.values(), readOnly !== undefined, { ids, reconciled });
      const opened: OpenReconcile = { ...reconciled, unknownThinIds: unknown };
      log.info('pool opened', { pool: poolName, new: newPool, mode: readOnly ?? 'rw', reconcile: reconciled.action });
      const set = new DeviceSet(
        home,
        setOpts,
        naming,
        dm,
        lock,
        pool,
        tx,
        opened,
        hook,
        !extras.dm,
        extras.onDeferredDeleteError ?? (() => {}),
      );
      set.dockerAdoption = adopted;
      if (!readOnly) {
        await set.devices.initBase(undo);
        const [failed] = await set.devices.retryDeferredDeletes();
        if (failed) throw failed.error;
      }
      undo.commit();
      if (set.tx.readOnly === undefined) set.retryTimer.start(retryMs);
      return set;
    } catch (e) {
      const err = await undo.unwind(e);
      lock?.release();
      if (!extras.dm) dm?.close();
      throw err;
    }
  }

  /**
   * Shut down the pool of `home` if it is active; a pool that is not active is left as it is (no
   * pool is made to be taken down again): `{ active: false }`, for a caller to report, not fail on.
   */
  static async shutdownHome(
    home: string,
    options: readonly string[] | PoolOptionsInput = {},
    extras: DeviceSetExtras = {},
  ): Promise<HomeShutdown> {
    const opts = withHomePrefix(home, options, extras);
    const dm = extras.dm ?? DeviceMapper.open();
    try {
      const poolName = opts.thinPoolDevice ?? (existsSync(home) ? PoolNaming.forHome(home, opts.prefix).poolName() : '');
      const ours = existsSync(home) ? `${PoolNaming.forHome(home, opts.prefix).stem}-` : '';
      const active = poolName !== '' && dm.info({ name: poolName }) !== null;
      if (!active || ours === '') return { active: false, poolName };
      let set: DeviceSet;
      try {
        set = await DeviceSet.open(home, options, { ...extras, dm });
      } catch (e) {
        // Metadata files that cannot be read (or disagree with the pool), pool metadata that
        // cannot be read, or a failed pool (status Fail or Error) must not keep the pool up.
        if (errnoOf(e) !== 'EUCLEAN' && errnoOf(e) !== 'EILSEQ' && !poolFailed(dm, poolName)) throw e;
        return { active: true, ...(await shutdownFromKernel(dm, home, opts, poolName)) };
      }
      return { active: true, ...(await set.shutdown()) };
    } finally {
      if (!extras.dm) dm.close();
    }
  }

  /**
   * Check the metadata of the pool of `home` (as thin_check): the pool must be inactive
   * (PoolActiveError, EBUSY, for a live one). Never throws on bad metadata: `ok` and `problems` say.
   */
  static checkMetadata(home: string, options: readonly string[] | PoolOptionsInput = {}, extras: DeviceSetExtras = {}): PoolMetadataCheck {
    const opts = withHomePrefix(home, options, extras);
    const dm = extras.dm ?? DeviceMapper.open();
    try {
      const poolName = opts.thinPoolDevice ?? PoolNaming.forHome(home, opts.prefix).poolName();
      return checkInactivePool(dm, home, poolName, opts);
    } finally {
      if (!extras.dm) dm.close();
    }
  }

  /** Serialize public operations (one pool transaction at a time); none is taken once closing. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new PoolStateError(this.poolName, 'the device set is closed or shut down'));
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private step(point: CrashPointName): void {
    this.hook?.(point);
  }

  devicePath(hash: string): string {
    return this.devices.devicePath(hash);
  }

  /** A snapshot `hash` of `baseHash` ('' = the base device). */
  async addDevice(hash: string, baseHash: string = BASE_HASH): Promise<void> {
    // Validate before anything: the hash and the dm name it makes.
    validateHash(hash);
    this.naming.deviceName(hash);
    return this.serial(() => this.devices.add(hash, baseHash));
  }

  /**
   * Deactivate, discard (dm.blkdiscard) and delete. Busy: deferred (dm.use_deferred_deletion) or
   * DeviceBusyError. Then, whatever became of it, the deletions deferred earlier are retried.
   */
  async deleteDevice(hash: string): Promise<void> {
    validateHash(hash);
    return this.serial(async () => {
      try {
        await this.devices.delete(hash, this.mounts.ours(hash));
      } finally {
        // Their failures go to onDeferredDeleteError: the delete's own outcome is the answer.
        await this.retryDeferred().catch((e: unknown) => this.onDeferredDeleteError(e));
      }
    });
  }

  /** Retry the deferred deletions now (they are also retried on the timer and after every delete). */
  retryDeferredDeletes(): Promise<void> {
    return this.serial(() => this.retryDeferred());
  }

  private async retryDeferred(): Promise<void> {
    if (!this.devices.hasDeferredDeletes) return;
    for (const f of await this.devices.retryDeferredDeletes()) this.onDeferredDeleteError(f.error, f.hash);
  }

  /** Make /dev/mapper/<name> for a device (no-op when active). */
  activate(hash: string): Promise<DeviceInfo> {
    return this.devices.activate(hash);
  }

  /** Remove the dm device (the thin id stays). Busy after retries: DeviceBusyError naming holders. */
  deactivate(hash: string): Promise<void> {
    return this.devices.deactivate(hash);
  }

  activateDevice(hash: string): Promise<DeviceInfo> {
    return this.serial(() => this.activate(hash));
  }

  deactivateDevice(hash: string): Promise<void> {
    return this.serial(() => this.deactivate(hash));
  }

  /** Mount the device on `path` (counted when ours already); `createMountPoint` makes missing folders. */
  mountDevice(hash: string, path: string, mountLabel = '', opts: MountOptions = {}): Promise<void> {
    return this.serial(() => this.mounts.mount(hash, path, mountLabel, opts));
  }

  /** Where the device is mounted now, from the kernel's mount table (any process's mounts). */
  mountPoints(hash: string, table?: MountEntry[]): string[] {
    return this.mounts.mountPoints(hash, table);
  }

  /**
   * Drop one mount of ours (counted); the last one unmounts and deactivates. A device mounted by an
   * earlier process is unmounted wherever the kernel's mount table has it; one already unmounted
   * by hand is deactivated.
   */
  unmountDevice(hash: string): Promise<void> {
    return this.serial(() => this.mounts.unmount(hash));
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
    return this.serial(() => this.devices.status(hash));
  }

  /**
   * Every thin id in the pool, from its own metadata (a metadata snapshot of the live pool): mapped,
   * exclusive and shared blocks, and the hash our metadata has on it (null: not ours).
   */
  thins(): Promise<PoolThin[]> {
    return this.serial(async () => readPoolThins(this.dm, this.pool, this.tx.devices.values(), this.tx.readOnly !== undefined));
  }

  status(): PoolStatus {
    return poolStatusOf(this.dm, this.pool, this.tx.transactionId);
  }

  /**
   * Grow the pool's data and/or metadata (resize.ts): a Bytes alone is the data size. Loop files
   * are grown; block devices must have grown already. `{}` takes what the devices hold now.
   */
  resizePool(target: PoolResizeTarget | Bytes): Promise<void> {
    return this.serial(() => resizePool(this.dm, this.pool, target, (point) => this.step(point)));
  }

  /** Unmount and deactivate everything, remove the pool we made (the loops go with it); keep data. */
  shutdown(): Promise<ShutdownResult> {
    // Queued after what is already waiting; nothing is queued after it.
    this.retryTimer.stop();
    const run = this.serial(async () => {
      try {
        // Ours and those of earlier processes alike: the kernel's mount table is the truth.
        const unmounted = await this.mounts.unmountAll(this.tx.devices.keys());
        // Every device of this home's names, holders first, suspended ones resumed first: those
        // the metadata knows and any a crash left. The pool's name is among them only if we made it.
        const keep = this.pool.owned ? [] : [this.poolName];
        await removeByStem(this.dm, this.naming, keep);
        if (this.pool.owned) await detachLoopsOf([this.pool.dataFile, this.pool.metadataFile].filter((f) => f !== undefined));
        return { unmounted };
      } finally {
        if (this.ownsDm) this.dm.close();
        this.lock.release();
      }
    });
    this.closed = true;
    this.done ??= run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Release the lock and control node without touching devices, once the operations already
   * queued are over; new ones are refused from now on. After a shutdown: waits for it, no more.
   */
  close(): Promise<void> {
    if (this.done) return this.done;
    this.retryTimer.stop();
    this.closed = true;
    this.done = this.queue.then(() => {
      if (this.ownsDm) this.dm.close();
      this.lock.release();
    });
    return this.done;
  }

  /** The pool's thin ids as the metadata knows them (for tests and `pool` CLI). */
  deviceRecords(): DeviceRecord[] {
    return [...this.tx.devices.values()];
  }

  get transactionId(): bigint {
    return this.tx.transactionId;
  }
}

/**
 * Shutdown from the kernel's side alone, under the home's lock: every mount of a `<stem>-*` device,
 * the devices (a dm.thinpooldev pool is kept), then any loop device left on the loop files.
 */
async function shutdownFromKernel(dm: DeviceMapper, home: string, opts: PoolOptions, poolName: DeviceName): Promise<ShutdownResult> {
  checkHomeFolders(home);
  const lock = HomeLock.acquire(join(home, 'lock'));
  try {
    const naming = PoolNaming.forHome(home, opts.prefix);
    const keep = opts.thinPoolDevice === undefined ? [] : [poolName];
    const unmounted = await unmountByStem(dm, naming, keep);
    await removeByStem(dm, naming, keep);
    if (opts.thinPoolDevice === undefined && opts.dataDevice === undefined) {
      const files = loopFiles(join(home, 'devicemapper'));
      await detachLoopsOf([files.data, files.metadata]);
    }
    return { unmounted };
  } finally {
    lock.release();
  }
}

/** The pool's status says Fail or Error (read without a flush: a failed pool commits nothing). */
function poolFailed(dm: DeviceMapper, poolName: DeviceName): boolean {
  try {
    const line = dm.status({ name: poolName }, { noFlush: true })[0];
    return line?.type === 'thin-pool' && parseThinPoolStatus(line.params).state !== 'ok';
  } catch {
    return false;
  }
}

/** Before reconcile acts: resume an origin a crash left suspended, and deactivate the intent's
 *  device if nothing holds it (a thin id that is open cannot be deleted). */
async function prepareReconcile(dm: DeviceMapper, naming: PoolNaming, intent: Intent): Promise<void> {
  if (intent.originHash !== undefined) {
    const oi = dm.info({ name: naming.deviceName(intent.originHash) });
    // A device without a live table cannot be resumed (EINVAL); activate repairs it when used.
    if (oi?.suspended && oi.liveTable) await dm.resume({ name: oi.name });
  }
  const info = dm.info({ name: naming.deviceName(intent.hash) });
  if (info !== null && info.openCount === 0) await dm.remove({ name: info.name }, { retry: true });
}
