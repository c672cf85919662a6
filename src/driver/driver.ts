// The storage-driver face of the pool (Docker's devmapper Driver): layers by id, mounted under
// <home>/mnt/<id>, their root at <mount>/rootfs. get/put are reference counted, so a layer
// mounted twice is unmounted once, by the last put. Every entry point checks its id first: ''
// is the base (get('') would mount it over <home>/mnt) and an id is a path component.
import { rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceSet, type DeviceSetExtras } from '../thin/device-set.js';
import { errnoOf } from '../thin/errors.js';
import { BASE_HASH, validateHash } from '../thin/metadata-store.js';
import { checkMountLabel } from '../thin/mount.js';
import type { PoolOptionsInput } from '../thin/options.js';
import { makeDirs } from '../thin/dirs.js';

export class Driver {
  private readonly refs = new Map<string, number>();

  private constructor(
    readonly home: string,
    readonly deviceSet: DeviceSet,
  ) {}

  /** Docker's Init(home, options). */
  static async init(home: string, options: readonly string[] | PoolOptionsInput = {}, extras: DeviceSetExtras = {}): Promise<Driver> {
    const set = await DeviceSet.open(home, options, extras);
    try {
      makeDirs(join(home, 'mnt'), 0o700);
    } catch (e) {
      await set.shutdown();
      throw e;
    }
    return new Driver(home, set);
  }

  toString(): string {
    return 'devicemapper';
  }

  private mountPath(id: string): string {
    return join(this.home, 'mnt', id);
  }

  /** A layer `id` as a snapshot of `parent` (none or '': of the base file system). */
  async create(id: string, parent = BASE_HASH): Promise<void> {
    validateHash(id);
    if (parent !== BASE_HASH) validateHash(parent);
    return this.deviceSet.addDevice(id, parent);
  }

  /**
   * Delete a layer; an unknown id is not an error (as in Docker). Its mount point is removed only
   * when empty and no longer mounted (rmdir, as Docker did): with deferred deletion, or a mount
   * another process made, the file system there is still in use and its files are not ours.
   */
  async remove(id: string): Promise<void> {
    validateHash(id);
    if (!this.deviceSet.hasDevice(id)) return;
    if ((this.refs.get(id) ?? 0) > 0) {
      // Still mounted by a get without its put: unmount first, as Docker's Remove did.
      this.refs.delete(id);
      await this.deviceSet.unmountDevice(id);
    }
    await this.deviceSet.deleteDevice(id);
    try {
      rmdirSync(this.mountPath(id));
    } catch (e) {
      // Never made, not empty (not ours to empty), or a mount point (EBUSY: rmdir(2) refuses one
      // mounted in this mount namespace, the one /proc/self/mountinfo would have shown): left as it is.
      if (!['ENOENT', 'ENOTEMPTY', 'EEXIST', 'EBUSY'].includes(errnoOf(e) ?? '')) throw e;
    }
  }

  /** Mount the layer (once) and return its root folder. */
  async get(id: string, mountLabel = ''): Promise<string> {
    validateHash(id);
    checkMountLabel(mountLabel);
    const mp = this.mountPath(id);
    const rootfs = join(mp, 'rootfs');
    const n = this.refs.get(id) ?? 0;
    if (n > 0) {
      this.refs.set(id, n + 1);
      return rootfs;
    }
    // The mount point is made only when the mount is sure to be tried, and removed if it fails.
    await this.deviceSet.mountDevice(id, mp, mountLabel, { createMountPoint: true });
    this.refs.set(id, 1);
    try {
      makeDirs(rootfs, 0o755);
    } catch (e) {
      await this.put(id);
      throw e;
    }
    return rootfs;
  }

  /** Release one get; the last one unmounts and deactivates. */
  async put(id: string): Promise<void> {
    validateHash(id);
    const n = this.refs.get(id) ?? 0;
    if (n === 0) return;
    if (n > 1) {
      this.refs.set(id, n - 1);
      return;
    }
    this.refs.delete(id);
    await this.deviceSet.unmountDevice(id);
  }

  exists(id: string): boolean {
    validateHash(id);
    return this.deviceSet.hasDevice(id);
  }

  /** Key/value rows as Docker's Status. */
  status(): [string, string][] {
    const s = this.deviceSet.status();
    const mb = (b: bigint) => `${(Number(b) / (1024 * 1024)).toFixed(1)} Mb`;
    return [
      ['Pool Name', s.poolName],
      ['Pool Blocksize', `${s.sectorSizeBytes / 1024n} Kb`],
      ['Data file', s.dataFile],
      ['Metadata file', s.metadataFile],
      ['Data Space Used', mb(s.data.usedBytes)],
      ['Data Space Total', mb(s.data.totalBytes)],
      ['Metadata Space Used', mb(s.metadata.usedBytes)],
      ['Metadata Space Total', mb(s.metadata.totalBytes)],
    ];
  }

  /** Unmount every layer and shut the pool down (data kept). */
  async cleanup(): Promise<void> {
    for (const id of [...this.refs.keys()]) {
      this.refs.set(id, 1);
      await this.put(id);
    }
    await this.deviceSet.shutdown();
  }
}
