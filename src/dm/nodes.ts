// /dev/mapper/<name> without udev: libdevmapper's node operations (mknod after resume, unlink on
// remove, rename on rename) done by the library, into `<devDir>/mapper` (a temp folder in tests).
import { mkdirSync, readdirSync, renameSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { DevT } from '../structs/dev.js';
import { DM_CONTROL_NODE, DM_DIR } from '../structs/dm-ioctl.js';
import { type CPath, cPath, ensureNode, sysUnlinkC } from '../ioctl/index.js';
import { InvalidArgumentError } from './errors.js';

/** How a node is made: ensureNode() of src/ioctl (mknod), replaceable in tests that are not root. */
export type MakeNode = (path: string, spec: { type: 'block' | 'char'; major: number; minor: number; mode: number }) => unknown;

/** The /dev/mapper entries the library maintains. */
export interface NodeManager {
  readonly mapperDir: string;
  /** Makes `<mapperDir>/<name>` the block node of `dev` (mode 0600), replacing a stale one. */
  add(name: string, dev: DevT): void;
  /** Unlinks `<mapperDir>/<name>`; a missing node is not an error. */
  remove(name: string): void;
  /** Moves the node to its new name; recreates it from `dev` when the old one is missing. */
  rename(oldName: string, newName: string, dev?: DevT): void;
  /** Device names with a node, in directory order, without `control`. */
  list(): string[];
  exists(name: string): boolean;
}

/** Mode of a node: root-only, as libdevmapper's default (DM_DEVICE_MODE 0600). */
export const DM_NODE_MODE = 0o600;

/** How many names' encoded paths a MapperNodes keeps (all are dropped when it is full). */
const PATH_CACHE_SIZE = 256;

export class MapperNodes implements NodeManager {
  readonly mapperDir: string;
  /**
   * `<mapperDir>/<name>` as libc takes it, per name: a device made and removed again and again
   * (snapshot cycles) has its path joined and encoded once.
   */
  private readonly paths = new Map<string, CPath>();

  constructor(
    devDir = '/dev',
    private readonly makeNode: MakeNode = ensureNode,
  ) {
    this.mapperDir = join(devDir, DM_DIR);
  }

  add(name: string, dev: DevT): void {
    this.notControl(name);
    // The folder is made only when the first mknod says it is missing: one system call per node
    // in the common case (bench P1).
    const spec = { type: 'block', major: dev.major, minor: dev.minor, mode: DM_NODE_MODE } as const;
    // ensureNode makes the folder itself when mknod says it is missing.
    if (this.makeNode === ensureNode) {
      ensureNode(this.cPath(name), spec);
      return;
    }
    try {
      this.makeNode(this.path(name), spec);
    } catch (e) {
      if ((e as { code?: unknown } | null)?.code !== 'ENOENT') throw e;
      mkdirSync(this.mapperDir, { recursive: true, mode: 0o755 });
      this.makeNode(this.path(name), spec);
    }
  }

  remove(name: string): void {
    this.notControl(name);
    try {
      sysUnlinkC(this.cPath(name));
    } catch (e) {
      if ((e as { code?: unknown } | null)?.code !== 'ENOENT') throw e;
    }
  }

  rename(oldName: string, newName: string, dev?: DevT): void {
    this.notControl(oldName);
    this.notControl(newName);
    if (this.exists(oldName)) {
      mkdirSync(this.mapperDir, { recursive: true, mode: 0o755 });
      renameSync(this.path(oldName), this.path(newName));
    } else if (dev) {
      this.add(newName, dev);
    }
  }

  list(): string[] {
    try {
      return readdirSync(this.mapperDir).filter((n) => n !== DM_CONTROL_NODE);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  exists(name: string): boolean {
    try {
      lstatSync(this.path(name));
      return true;
    } catch {
      return false;
    }
  }

  /** `<mapperDir>/control` is the control node: never replaced, renamed or unlinked for a device. */
  private notControl(name: string): void {
    if (name === DM_CONTROL_NODE) {
      throw new InvalidArgumentError('device name', name, `reserved: ${this.path(name)} is the device-mapper control node`);
    }
  }

  private path(name: string): string {
    return this.paths.get(name)?.path ?? join(this.mapperDir, name);
  }

  private cPath(name: string): CPath {
    let p = this.paths.get(name);
    if (p === undefined) {
      if (this.paths.size >= PATH_CACHE_SIZE) this.paths.clear();
      p = cPath(join(this.mapperDir, name), 'mknod');
      this.paths.set(name, p);
    }
    return p;
  }
}
