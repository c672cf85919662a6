// DM_DEV_RENAME: a new name (payload: the name), or with DM_UUID_FLAG a uuid for a device that has
// none (payload: the uuid). A rename moves /dev/mapper/<old> to <new>.
import { DmFlag, DM_NAME_LEN, DM_UUID_LEN } from '../../structs/dm-ioctl.js';
import { encodeStringPayload } from '../../structs/string-payload.js';
import { addressWith, type DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import { deviceName, deviceUuid, type DeviceName, type DeviceRef, type DeviceUuid } from '../names.js';
import { udevEventNr } from '../udev.js';
import { nodeAfterRename } from './node-sync.js';

export async function rename(ctx: DmContext, ref: DeviceRef, newName: DeviceName, opts: { udevFlags?: number } = {}): Promise<DeviceInfo> {
  deviceName(newName);
  const reply = ctx.control.run(
    'DM_DEV_RENAME',
    addressWith(ref, 0, {
      event_nr: udevEventNr(ctx.udev, 'rename', opts.udevFlags),
      payload: encodeStringPayload('dm_ioctl', 'new name', newName, DM_NAME_LEN),
    }),
  );
  const info = infoFromHeader(reply.header);
  // The reply's header keeps the name it was addressed by.
  const oldName = 'name' in ref ? ref.name : info.name;
  if (oldName && oldName !== newName) await nodeAfterRename(ctx, oldName, newName, info.dev, reply.header.flags);
  return { ...info, name: newName };
}

export function setUuid(ctx: DmContext, ref: DeviceRef, uuid: DeviceUuid, opts: { udevFlags?: number } = {}): DeviceInfo {
  deviceUuid(uuid);
  const reply = ctx.control.run(
    'DM_DEV_RENAME',
    addressWith(ref, DmFlag.DM_UUID_FLAG, {
      event_nr: udevEventNr(ctx.udev, 'rename', opts.udevFlags),
      payload: encodeStringPayload('dm_ioctl', 'new uuid', uuid, DM_UUID_LEN),
    }),
  );
  return { ...infoFromHeader(reply.header), uuid };
}
