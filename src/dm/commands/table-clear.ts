// DM_TABLE_CLEAR: drops the inactive table.
import { addressWith, type DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';

export function clearTable(ctx: DmContext, ref: DeviceRef): DeviceInfo {
  return infoFromHeader(ctx.control.run('DM_TABLE_CLEAR', addressWith(ref, 0)).header);
}
