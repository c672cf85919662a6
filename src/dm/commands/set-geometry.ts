// DM_DEV_SET_GEOMETRY: the CHS geometry reported by HDIO_GETGEO, as "<cyl> <heads> <sectors> <start>".
import { EncodeError } from '../../structs/errors.js';
import { encodeStringPayload, formatGeometry, type DmGeometry } from '../../structs/string-payload.js';
import { addressWith, type DmContext } from '../context.js';
import { InvalidArgumentError } from '../errors.js';
import type { DeviceRef } from '../names.js';

export type Geometry = DmGeometry;

export function setGeometry(ctx: DmContext, ref: DeviceRef, g: Geometry): void {
  let text: string;
  try {
    text = formatGeometry(g);
  } catch (err) {
    if (err instanceof EncodeError) throw new InvalidArgumentError('geometry', JSON.stringify(g), err.message);
    throw err;
  }
  ctx.control.run('DM_DEV_SET_GEOMETRY', addressWith(ref, 0, { payload: encodeStringPayload('dm_ioctl', 'geometry', text) }));
}
