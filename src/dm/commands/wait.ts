// DM_DEV_WAIT: blocks until the device's event counter differs from `eventNr` (returns at once when
// it already does), on a worker thread so that the event loop runs meanwhile.
import { addressWith, type DmContext } from '../context.js';
import { InvalidArgumentError } from '../errors.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';

export async function waitEvent(ctx: DmContext, ref: DeviceRef, eventNr: number): Promise<DeviceInfo> {
  if (!Number.isInteger(eventNr) || eventNr < 0 || eventNr > 0xffffffff) {
    throw new InvalidArgumentError('event number', eventNr, 'must be an integer in 0..2^32-1');
  }
  const reply = await ctx.control.runAsync('DM_DEV_WAIT', addressWith(ref, 0, { event_nr: eventNr }));
  return infoFromHeader(reply.header);
}
