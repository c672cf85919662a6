// Which thin devices are mounted where: counted mounts of this process, and the kernel's mount
// table for those made by earlier processes (the CLI mounts in one process, unmounts in another).
import { rmdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { probeFsType, type FsSuperblockType } from '../blk/index.js';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { formatDev } from '../structs/dev.js';
import { DeviceBusyError, errnoOf, NotMountedError, UnknownDeviceError } from './errors.js';
import { mountOptionsFor, mountsOf, mountTable, mountThin, unmountRetrying, type MountEntry } from './mount.js';
import type { PoolNaming } from './naming.js';
import type { PoolOptions } from './options.js';
import { makeDirs } from './dirs.js';

/** What the tracker needs of the device set. */
export interface MountHost {
  readonly dm: DeviceMapper;
  readonly naming: PoolNaming;
  readonly options: PoolOptions;
  /** Throws UnknownDeviceError unless the device exists (and is not being deleted). */
  requireDevice(hash: string): void;
  knowsDevice(hash: string): boolean;
  devicePath(hash: string): string;
  /** `known`: the device's DM_DEV_STATUS just read (null: not active), not to be asked again. */
  activate(hash: string, known?: DeviceInfo | null): Promise<DeviceInfo>;
  deactivate(hash: string): Promise<void>;
}

export interface MountOptions {
  /** Make the mount point's missing folders, only once the mount is sure to be attempted; a
   *  failed mount removes them again. */
  createMountPoint?: boolean;
}

export class MountTracker {
  private readonly mounts = new Map<string, { path: string; count: number }>();

  constructor(private readonly host: MountHost) {}

  /** Ours, by this process: where `hash` is mounted (counted), if it is. */
  ours(hash: string): string | undefined {
    return this.mounts.get(hash)?.path;
  }

  /** Where the device is mounted now, from the kernel's mount table (any process's mounts). */
  mountPoints(hash: string, table?: MountEntry[]): string[] {
    return this.mountPointsOf(this.host.dm.info({ name: this.host.naming.deviceName(hash) }), table);
  }

  /** A device that is not active is mounted nowhere: the mount table is read only for one that is. */
  private mountPointsOf(info: DeviceInfo | null, table?: MountEntry[]): string[] {
    if (!info) return [];
    return mountsOf(formatDev(info.dev), table).map((e) => e.mountPoint);
  }

  async mount(hash: string, path: string, mountLabel: string, opts: MountOptions = {}): Promise<void> {
    const h = this.host;
    h.requireDevice(hash);
    const target = resolve(path);
    const m = this.mounts.get(hash);
    if (m) {
      if (m.path !== target) throw new DeviceBusyError(h.naming.deviceName(hash), [`already mounted on ${m.path}`]);
      m.count++;
      return;
    }
    // Mounted by an earlier process (a CLI call): the kernel's mount table says so, not our memory.
    const info = h.dm.info({ name: h.naming.deviceName(hash) });
    const already = this.mountPointsOf(info);
    if (already.includes(target)) {
      this.mounts.set(hash, { path: target, count: 1 });
      return;
    }
    if (already.length > 0) throw new DeviceBusyError(h.naming.deviceName(hash), [`already mounted on ${already.join(', ')}`]);
    const wasActive = info !== null;
    await h.activate(hash, info);
    const made = opts.createMountPoint ? makeDirs(target, 0o755) : [];
    let fs: FsSuperblockType;
    try {
      // The superblock says what the device holds, not dm.fs: a pool opened without dm.fs=xfs
      // still mounts its xfs layers, and a home made elsewhere mounts whatever its base is.
      const device = h.devicePath(hash);
      fs = probeFsType(device);
      mountThin(device, target, fs, mountOptionsFor(fs, h.options.mountOptions, mountLabel));
    } catch (e) {
      for (const dir of made.reverse()) rmdirSync(dir);
      if (!wasActive) await h.deactivate(hash).catch(() => undefined);
      throw e;
    }
    this.mounts.set(hash, { path: target, count: 1 });
    if (h.options.xfsNoSpaceMaxRetries !== undefined && fs === 'xfs') this.setXfsRetries(hash);
  }

  private setXfsRetries(hash: string): void {
    const info = this.host.dm.info({ name: this.host.naming.deviceName(hash) });
    if (!info) return;
    writeFileSync(`/sys/fs/xfs/dm-${info.dev.minor}/error/metadata/ENOSPC/max_retries`, String(this.host.options.xfsNoSpaceMaxRetries));
  }

  /**
   * Drop one mount of ours (counted); the last one unmounts and deactivates. A device mounted by an
   * earlier process is unmounted wherever the kernel's mount table has it; one unmounted already
   * (by hand, umount(8)) counts as unmounted: it is deactivated.
   */
  async unmount(hash: string): Promise<void> {
    const h = this.host;
    const m = this.mounts.get(hash);
    if (m && --m.count > 0) return;
    this.mounts.delete(hash);
    const paths = new Set(this.mountPoints(hash));
    if (m) paths.add(m.path);
    if (paths.size === 0) {
      if (!h.knowsDevice(hash)) throw new UnknownDeviceError(hash);
      if (h.dm.info({ name: h.naming.deviceName(hash) }) === null) throw new NotMountedError(hash);
    }
    for (const path of paths) await this.unmountPath(hash, path);
    await h.deactivate(hash);
  }

  /** Unmount every device of `hashes` wherever it is mounted; returns what was unmounted. */
  async unmountAll(hashes: Iterable<string>): Promise<{ hash: string; path: string }[]> {
    const table = mountTable();
    const done: { hash: string; path: string }[] = [];
    for (const hash of hashes) {
      const paths = new Set(this.mountPoints(hash, table));
      const m = this.mounts.get(hash);
      if (m) paths.add(m.path);
      for (const path of paths) {
        await this.unmountPath(hash, path);
        done.push({ hash, path });
      }
      this.mounts.delete(hash);
    }
    return done;
  }

  private async unmountPath(hash: string, path: string): Promise<void> {
    try {
      await unmountRetrying(path);
    } catch (e) {
      if (errnoOf(e) === 'EBUSY') throw new DeviceBusyError(this.host.naming.deviceName(hash), [`${path} is in use`]);
      throw e;
    }
  }
}
