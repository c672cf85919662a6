// DM_DEV_STATUS: one device's state; null when there is no such device (ENXIO).
import { DmError } from '../../ioctl/errors.js';
import { addressWith, type DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';

export function info(ctx: DmContext, ref: DeviceRef, flags = 0): DeviceInfo | null {
  try {
    return infoFromHeader(ctx.control.run('DM_DEV_STATUS', addressWith(ref, flags)).header);
  } catch (err) {
    if (err instanceof DmError && err.code === 'ENXIO') return null;
    throw err;
  }
}
