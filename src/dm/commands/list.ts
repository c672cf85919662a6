// DM_LIST_DEVICES: every device's name and dev; event_nr from kernels with the tail (4.38+), and the
// uuid when asked with DM_UUID_FLAG (off by default, as `dmsetup ls`: the golden replies have none).
import { decodeNameList } from '../../structs/name-list.js';
import { decodeDev } from '../../structs/dev.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import type { DmContext } from '../context.js';
import type { DeviceListEntry } from '../info.js';

export function list(ctx: DmContext, opts: { uuids?: boolean } = {}): DeviceListEntry[] {
  const reply = ctx.control.run('DM_LIST_DEVICES', { flags: opts.uuids ? DmFlag.DM_UUID_FLAG : 0 });
  return decodeNameList(reply.payload).map((e) => {
    const entry: DeviceListEntry = { name: e.name, dev: decodeDev(e.dev) };
    if (e.event_nr !== undefined) entry.eventNr = e.event_nr;
    if (e.uuid !== undefined && e.uuid !== '') entry.uuid = e.uuid;
    return entry;
  });
}
