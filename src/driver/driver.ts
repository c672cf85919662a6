// The storage-driver face of the pool (Docker's devmapper Driver): layers by id, mounted under
// <home>/mnt/<id>, their root at <mount>/rootfs. get/put are reference counted, so a layer
// mounted twice is unmounted once, by the last put.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceSet, type DeviceSetExtras } from '../thin/device-set.js';
import type { PoolOptionsInput } from '../thin/options.js';

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
      mkdirSync(join(home, 'mnt'), { recursive: true, mode: 0o700 });
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

  /** A layer `id` as a snapshot of `parent` (none: of the base file system). */
  create(id: string, parent = ''): Promise<void> {
    return this.deviceSet.addDevice(id, parent);
  }

  /** Delete a layer; an unknown id is not an error (as in Docker). */
  async remove(id: string): Promise<void> {
    if (!this.deviceSet.hasDevice(id)) return;
    if ((this.refs.get(id) ?? 0) > 0) {
      // Still mounted by a get without its put: unmount first, as Docker's Remove did.
      this.refs.delete(id);
      await this.deviceSet.unmountDevice(id);
    }
    await this.deviceSet.deleteDevice(id);
    rmSync(this.mountPath(id), { recursive: true, force: true });
  }

  /** Mount the layer (once) and return its root folder. */
  async get(id: string, mountLabel = ''): Promise<string> {
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
      mkdirSync(rootfs, { recursive: true, mode: 0o755 });
    } catch (e) {
      await this.put(id);
      throw e;
    }
    return rootfs;
  }

  /** Release one get; the last one unmounts and deactivates. */
  async put(id: string): Promise<void> {
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
