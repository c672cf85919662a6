// Device nodes without udev: make `path` a block or character node of major:minor, as
// libdevmapper's node operations do when udev is disabled.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DevT } from '../structs/dev.js';
import { SysError } from './errors.js';
import { Errno } from './errno.js';
import { S_IFBLK, S_IFCHR, makedev, sysMknod } from './libc.js';

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
  let st;
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

/**
 * Makes `path` a device node of `spec` (mkdir -p of its folder): leaves a matching node alone,
 * replaces a node of another number or kind (a stale name after a reboot or rename), refuses to
 * replace a directory.
 */
export function ensureNode(path: string, spec: NodeSpec, sys: NodeSys = libcNodeSys): EnsureNodeResult {
  const state = inspect(path, spec);
  if (state === 'match') return 'exists';
  if (state === 'directory') throw new SysError('mknod', Errno.EEXIST, path, `mknod ${path} (a directory is there)`);
  if (state === 'other') unlinkSync(path);
  else mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const type = spec.type === 'block' ? S_IFBLK : S_IFCHR;
  try {
    sys.mknod(path, type | spec.mode, spec);
  } catch (err) {
    // Someone (udev, another of our processes) made it between our look and mknod: fine if it matches.
    if (err instanceof SysError && err.code === 'EEXIST' && inspect(path, spec) === 'match') return 'exists';
    throw err;
  }
  chmodSync(path, spec.mode);
  return state === 'other' ? 'replaced' : 'created';
}
