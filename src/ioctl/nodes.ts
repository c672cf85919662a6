// Device nodes without udev: make `path` a block or character node of major:minor, as
// libdevmapper's node operations do when udev is disabled.
import { type BigIntStats, chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DevT } from '../structs/dev.js';
import { SysError } from './errors.js';
import { Errno } from './errno.js';
import { type CPath, S_IFBLK, S_IFCHR, makedev, sysMknod, sysMknodC } from './libc.js';

export interface NodeSpec extends DevT {
  type: 'block' | 'char';
  /** Permission bits, e.g. 0o600; applied exactly (the umask does not narrow them). */
  mode: number;
}

/** What ensureNode did. */
export type EnsureNodeResult = 'exists' | 'created' | 'replaced';

/** The system calls ensureNode makes, injectable so that tests need not be root. */
export interface NodeSys {
  mknod(path: string, mode: number, dev: DevT): void;
}

const libcNodeSys: NodeSys = { mknod: sysMknod };

/** What is at `path`: nothing, a node of the wanted kind and number, or something else. */
function inspect(path: string, spec: NodeSpec): 'missing' | 'match' | 'other' | 'directory' {
  let st: BigIntStats;
  try {
    st = lstatSync(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  if (st.isDirectory()) return 'directory';
  const kindOk = spec.type === 'block' ? st.isBlockDevice() : st.isCharacterDevice();
  return kindOk && st.rdev === makedev(spec) ? 'match' : 'other';
}

/** The process's umask, read once: chmod after mknod is needed only when it narrows a mode. */
let umask: number | undefined;
function currentUmask(): number {
  if (umask === undefined) {
    umask = process.umask(0o022);
    process.umask(umask);
  }
  return umask;
}

/**
 * Makes `path` a device node of `spec` (mkdir -p of its folder): leaves a matching node alone,
 * replaces a node of another number or kind (a stale name after a reboot or rename), refuses to
 * replace a directory. The common case is one mknod(2): the folder and what is already at `path`
 * are looked at only when mknod fails (bench P1 counts these system calls). A CPath (a path
 * encoded once, for nodes made again and again) goes to libc as it is.
 */
export function ensureNode(at: string | CPath, spec: NodeSpec, sys: NodeSys = libcNodeSys): EnsureNodeResult {
  const path = typeof at === 'string' ? at : at.path;
  const type = spec.type === 'block' ? S_IFBLK : S_IFCHR;
  let result: EnsureNodeResult = 'created';
  for (let attempt = 0; ; attempt++) {
    try {
      if (typeof at !== 'string' && sys === libcNodeSys) sysMknodC(at, type | spec.mode, spec);
      else sys.mknod(path, type | spec.mode, spec);
      break;
    } catch (err) {
      // SysError from libc, or a Node-style error from an injected mknod: both carry `code`.
      const code = (err as { code?: unknown } | null)?.code;
      if (attempt > 2) throw err;
      if (code === 'ENOENT') {
        mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
        continue;
      }
      if (code !== 'EEXIST') throw err;
      // Something is there: ours already (or udev's), a stale node to replace, or a directory.
      const state = inspect(path, spec);
      if (state === 'match') return 'exists';
      if (state === 'directory') throw new SysError('mknod', Errno.EEXIST, path, `mknod ${path} (a directory is there)`);
      if (state === 'other') {
        unlinkSync(path);
        result = 'replaced';
      }
    }
  }
  if ((spec.mode & currentUmask()) !== 0) chmodSync(path, spec.mode);
  return result;
}
