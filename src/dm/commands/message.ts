// DM_TARGET_MSG: a message to the target at `sector` (thin-pool: create_thin, delete...); the
// answer, when the target gives one, comes back as a string with DM_DATA_OUT_FLAG.
import { DmFlag } from '../../structs/dm-ioctl.js';
import { decodeStringPayload } from '../../structs/string-payload.js';
import { encodeTargetMsg } from '../../structs/target-msg.js';
import { addressWith, type DmContext } from '../context.js';
import { InvalidArgumentError } from '../errors.js';
import { sectors, type DeviceRef } from '../names.js';

/** Something besides white space (what String.prototype.trim removes), without making a string. */
const NOT_BLANK = /\S/;

export function message(ctx: DmContext, ref: DeviceRef, sector: bigint, msg: string): string {
  sectors(sector, 'message sector');
  if (typeof msg !== 'string' || !NOT_BLANK.test(msg)) throw new InvalidArgumentError('message', msg, 'is empty');
  if (msg.includes('\0')) throw new InvalidArgumentError('message', msg, 'contains a NUL byte');
  const reply = ctx.control.run('DM_TARGET_MSG', addressWith(ref, 0, { payload: encodeTargetMsg(sector, msg, ctx.control) }));
  if (!(reply.header.flags & DmFlag.DM_DATA_OUT_FLAG) || reply.payload.length === 0) return '';
  return decodeStringPayload(reply.payload, 'dm_target_msg reply');
}
