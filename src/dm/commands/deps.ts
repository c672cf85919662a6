// DM_TABLE_DEPS: the devices the live table uses.
import { decodeDev, type DevT } from '../../structs/dev.js';
import { decodeTargetDeps } from '../../structs/target-deps.js';
import { addressWith, type DmContext } from '../context.js';
import type { DeviceRef } from '../names.js';

export function deps(ctx: DmContext, ref: DeviceRef): DevT[] {
  return decodeTargetDeps(ctx.control.run('DM_TABLE_DEPS', addressWith(ref, 0)).payload).map(decodeDev);
}
