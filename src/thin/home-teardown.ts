// Taking a home's pool down from the kernel's side alone: the dm devices named under the home's
// stem, their mounts from the kernel's mount table, and the loop devices of its loop files. Used
// by DeviceSet.shutdown, and by DeviceSet.shutdownHome when the metadata files cannot be read:
// then nothing the metadata says is needed (or trusted), and nothing of the metadata is changed.
import { existsSync } from 'node:fs';
import { DEFAULT_REMOVE_RETRY } from '../dm/commands/remove.js';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { removeByPrefix } from '../dm/teardown.js';
import { detachLoop, findLoopByFile, type LoopOptions } from '../loop/index.js';
import { formatDev } from '../structs/dev.js';
import { DeviceBusyError, errnoOf } from './errors.js';
import { describeHolders } from './holders.js';
import { BASE_HASH } from './metadata-store.js';
import { mountTable, unmountRetrying } from './mount.js';
import type { PoolNaming } from './naming.js';

export interface Unmounted {
  hash: string;
  path: string;
}

/** The hash a dm name of this stem stands for (`-base` is the base), or null for another name. */
function hashOf(naming: PoolNaming, name: string): string | null {
  const prefix = `${naming.stem}-`;
  if (!name.startsWith(prefix)) return null;
  const rest = name.slice(prefix.length);
  return rest === 'base' ? BASE_HASH : rest;
}

/**
 * Unmount every mount of a device named `<stem>-*` (any process's, innermost first), as the
 * kernel's mount table has them. A mount that stays busy: DeviceBusyError naming its path.
 */
export async function unmountByStem(dm: DeviceMapper, naming: PoolNaming, keep: readonly string[]): Promise<Unmounted[]> {
  const byDev = new Map<string, string>();
  for (const d of dm.list()) if (hashOf(naming, d.name) !== null && !keep.includes(d.name)) byDev.set(formatDev(d.dev), d.name);
  const done: Unmounted[] = [];
  for (const m of mountTable().reverse()) {
    const name = byDev.get(m.majorMinor);
    if (name === undefined) continue;
    try {
      await unmountRetrying(m.mountPoint);
    } catch (e) {
      if (errnoOf(e) === 'EBUSY') throw new DeviceBusyError(name, [`${m.mountPoint} is in use`]);
      throw e;
    }
    done.push({ hash: hashOf(naming, name) ?? name, path: m.mountPoint });
  }
  return done;
}

/** Remove every device named `<stem>-*` but `keep`, holders first; one that stays is thrown (busy: DeviceBusyError). */
export async function removeByStem(dm: DeviceMapper, naming: PoolNaming, keep: readonly string[]): Promise<void> {
  const left = await removeByPrefix(dm, `${naming.stem}-`, { retry: DEFAULT_REMOVE_RETRY, keep });
  const failed = left.failed[0];
  if (failed) {
    const info = dm.info({ name: failed.name });
    if (errnoOf(failed.error) === 'EBUSY') throw new DeviceBusyError(failed.name, info ? describeHolders(info) : []);
    throw failed.error;
  }
}

/**
 * Detach loop devices still bound to the pool's loop files once the pool is gone. Ours are
 * attached with autoclear and went with the pool; this is for any attached without it.
 */
export async function detachLoopsOf(files: readonly string[], loopOpts: LoopOptions = {}): Promise<void> {
  for (const file of files) {
    if (!existsSync(file)) continue;
    for (const l of await findLoopByFile(file, loopOpts)) {
      try {
        await detachLoop(l, { ...loopOpts, expectBackingFile: file });
      } catch (e) {
        if (errnoOf(e) !== 'ENXIO') throw e; // ENXIO: autoclear got there first
      }
    }
  }
}
