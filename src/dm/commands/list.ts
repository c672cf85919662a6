// DM_LIST_DEVICES: every device's name and dev; event_nr from kernels with the tail (4.38+), and the
// uuid when asked with DM_UUID_FLAG (off by default, as `dmsetup ls`: the golden replies have none).
import { readNameList } from '../../structs/name-list.js';
import { decodeDevLow32 } from '../../structs/dev.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import type { DmContext } from '../context.js';
import type { DeviceListEntry } from '../info.js';
import type { DeviceName, DeviceUuid } from '../names.js';

export function list(ctx: DmContext, opts: { uuids?: boolean } = {}): DeviceListEntry[] {
  const reply = ctx.control.run('DM_LIST_DEVICES', { flags: opts.uuids ? DmFlag.DM_UUID_FLAG : 0 });
  const out: DeviceListEntry[] = [];
  // The record reader, not decodeNameList: no bigint per device on a list of thousands (bench P2).
  // The kernel's names and uuids are valid by construction: typed, not checked again.
  readNameList(reply.payload, (r) => {
    const entry: DeviceListEntry = { name: r.name as DeviceName, dev: decodeDevLow32(r.devLow) };
    if (r.event_nr !== undefined) entry.eventNr = r.event_nr;
    if (r.uuid !== undefined && r.uuid !== '') entry.uuid = r.uuid as DeviceUuid;
    out.push(entry);
  });
  return out;
}
