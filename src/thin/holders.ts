// Who keeps a device busy: its open count, the devices stacked on it (/sys/block/dm-N/holders)
// and the mount points that name it, for an error that says what to close.
import { readdirSync } from 'node:fs';
import type { DeviceInfo } from '../dm/info.js';
import { formatDev } from '../structs/dev.js';
import { mountsOf } from './mount.js';

/** What holds a device, as the kernel shows it now. */
export interface Holders {
  /** The devices stacked on it, by their block names (dm-N). */
  holders: string[];
  /** Where it is mounted. */
  mounts: string[];
}

export function findHolders(info: DeviceInfo, sysBlock = '/sys/block'): Holders {
  let holders: string[] = [];
  try {
    holders = readdirSync(`${sysBlock}/dm-${info.dev.minor}/holders`);
  } catch {
    // no sysfs entry (device gone meanwhile, or no sysfs)
  }
  let mounts: string[] = [];
  try {
    mounts = mountsOf(formatDev(info.dev)).map((m) => m.mountPoint);
  } catch {
    // no /proc
  }
  return { holders, mounts };
}

export function describeHolders(info: DeviceInfo, sysBlock = '/sys/block'): string[] {
  const { holders, mounts } = findHolders(info, sysBlock);
  const out: string[] = [];
  if (info.openCount > 0) out.push(`open count ${info.openCount}`);
  if (holders.length) out.push(`held by ${holders.join(', ')}`);
  for (const m of mounts) out.push(`mounted on ${m}`);
  if (info.deferredRemove) out.push('a deferred remove is pending');
  return out;
}
