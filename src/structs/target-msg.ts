// struct dm_target_msg (dm-ioctl.h): the DM_TARGET_MSG request: sector u64 then the message.
import { DecodeError, EncodeError } from './errors.js';
import { readCString } from './cstring.js';
import { checkU64, viewOf } from './bytes.js';
import { DM_TARGET_MSG_OFFSETS as MSG } from './dm-abi.js';

export { DM_TARGET_MSG_OFFSETS } from './dm-abi.js';

const STRUCT = 'dm_target_msg';

/** sector + message + NUL, no padding: libdevmapper sizes it the same way. */
export function encodeTargetMsg(sector: bigint, message: string): Uint8Array {
  checkU64(STRUCT, 'sector', sector);
  const length = Buffer.byteLength(message, 'utf8');
  if (length === 0) throw new EncodeError(STRUCT, 'message', 'is empty (the kernel rejects it)');
  if (message.includes('\0')) throw new EncodeError(STRUCT, 'message', 'holds a NUL byte');
  // Encoded in place (no intermediate array): thin-pool messages are on the snapshot hot path.
  const out = Buffer.alloc(MSG.message + length + 1);
  out.writeBigUInt64LE(sector, MSG.sector);
  out.write(message, MSG.message, length, 'utf8');
  return out;
}

export function decodeTargetMsg(payload: Uint8Array): { sector: bigint; message: string } {
  if (payload.length < MSG.message) throw new DecodeError(STRUCT, 0, `${payload.length} bytes cannot hold the sector`);
  return {
    sector: viewOf(payload).getBigUint64(MSG.sector, true),
    message: readCString(payload, MSG.message, payload.length, STRUCT, 'message'),
  };
}
