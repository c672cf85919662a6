// struct dm_target_msg (dm-ioctl.h): the DM_TARGET_MSG request: sector u64 then the message.
import { DecodeError, EncodeError } from './errors.js';
import { readCString } from './cstring.js';
import { checkU64, viewOf } from './bytes.js';
import { DM_TARGET_MSG_OFFSETS as MSG } from './dm-abi.js';
import type { DmPayloadArena } from './dm-ioctl.js';

export { DM_TARGET_MSG_OFFSETS } from './dm-abi.js';

const STRUCT = 'dm_target_msg';

/**
 * sector + message + NUL, no padding: libdevmapper sizes it the same way. With an arena the bytes
 * are its loan (no allocation), valid until its next one.
 */
export function encodeTargetMsg(sector: bigint, message: string, arena?: DmPayloadArena): Uint8Array {
  checkU64(STRUCT, 'sector', sector);
  const length = Buffer.byteLength(message, 'utf8');
  if (length === 0) throw new EncodeError(STRUCT, 'message', 'is empty (the kernel rejects it)');
  if (message.includes('\0')) throw new EncodeError(STRUCT, 'message', 'holds a NUL byte');
  // Encoded in place (no intermediate array): thin-pool messages are on the snapshot hot path.
  const out = arena ? arena.scratch(MSG.message + length + 1) : Buffer.alloc(MSG.message + length + 1);
  // The buffer is zeroed: sector 0 (every pool message) needs no bigint write.
  if (sector !== 0n) out.writeBigUInt64LE(sector, MSG.sector);
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
