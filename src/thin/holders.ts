// Who keeps a device busy: its open count, the devices stacked on it (/sys/block/dm-N/holders)
// and the mount points that name it, for an error that says what to close.
import { readdirSync } from 'node:fs';
import type { DeviceInfo } from '../dm/info.js';
import { formatDev } from '../structs/dev.js';
import { mountsOf, mountTable } from './mount.js';

export function describeHolders(info: DeviceInfo, sysBlock = '/sys/block'): string[] {
  const out: string[] = [];
  if (info.openCount > 0) out.push(`open count ${info.openCount}`);
  try {
    const holders = readdirSync(`${sysBlock}/dm-${info.dev.minor}/holders`);
    if (holders.length) out.push(`held by ${holders.join(', ')}`);
  } catch {
    // no sysfs entry (device gone meanwhile, or no sysfs)
  }
  try {
    for (const m of mountsOf(formatDev(info.dev), mountTable())) out.push(`mounted on ${m.mountPoint}`);
  } catch {
    // no /proc
  }
  if (info.deferredRemove) out.push('a deferred remove is pending');
  return out;
}
