// struct dm_target_deps (dm-ioctl.h): the DM_TABLE_DEPS reply: count u32, padding u32, then
// count huge_encode_dev()'d u64 devices.
import { DecodeError } from './errors.js';
import { checkU64, viewOf } from './bytes.js';
import { DM_TARGET_DEPS_OFFSETS as DEPS } from './dm-abi.js';

export { DM_TARGET_DEPS_OFFSETS } from './dm-abi.js';

const STRUCT = 'dm_target_deps';
/** sizeof(__u64): one entry of dev[]. */
const DEV_SIZE = 8;

export function decodeTargetDeps(payload: Uint8Array): bigint[] {
  if (payload.length < DEPS.dev) throw new DecodeError(STRUCT, 0, `${payload.length} bytes cannot hold count and padding`);
  const view = viewOf(payload);
  const count = view.getUint32(DEPS.count, true);
  if (count > (payload.length - DEPS.dev) / DEV_SIZE) {
    throw new DecodeError(STRUCT, 0, `count ${count} needs ${DEPS.dev + count * DEV_SIZE} bytes, payload has ${payload.length}`);
  }
  const devs: bigint[] = [];
  for (let i = 0; i < count; i++) devs.push(view.getBigUint64(DEPS.dev + i * DEV_SIZE, true));
  return devs;
}

/** The kernel's reply layout (data_size = data_start + 8 + 8 * count). */
export function encodeTargetDeps(devs: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(DEPS.dev + devs.length * DEV_SIZE);
  const view = viewOf(out);
  view.setUint32(DEPS.count, devs.length, true);
  for (const [i, dev] of devs.entries()) view.setBigUint64(DEPS.dev + i * DEV_SIZE, checkU64(STRUCT, `dev[${i}]`, dev), true);
  return out;
}
