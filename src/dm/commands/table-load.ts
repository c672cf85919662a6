// DM_TABLE_LOAD: the inactive table, swapped in by the next resume.
import type { DmRunRequest } from '../../ioctl/dm-control.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import { type DmTargetSpecIn, encodeTargetSpecs } from '../../structs/target-spec.js';
import { addressWith, type DmContext } from '../context.js';
import { InvalidArgumentError } from '../errors.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';
import { checkedTableParams, type Target } from '../targets.js';

export function loadTable(
  ctx: DmContext,
  ref: DeviceRef,
  targets: readonly Target[],
  opts: { readOnly?: boolean; label?: string } = {},
): DeviceInfo {
  const payload = tablePayload(ctx, targets);
  const req = addressWith(ref, opts.readOnly ? DmFlag.DM_READONLY_FLAG : 0, { target_count: targets.length, payload });
  if (opts.label !== undefined) req.label = opts.label;
  return infoFromHeader(ctx.control.run('DM_TABLE_LOAD', req).header);
}

/**
 * create()'s load, addressed by the `dev` DEV_CREATE just answered (huge_encode_dev()'d, as the
 * kernel gave it) with DM_PERSISTENT_DEV_FLAG, as addressWith({dev}) does and libdevmapper sends
 * it; `name` labels errors. The reply is not decoded: create answers with the resume's.
 */
export function loadNewTable(ctx: DmContext, dev: bigint, name: string, targets: readonly Target[], readOnly: boolean): void {
  const payload = tablePayload(ctx, targets);
  let flags = DmFlag.DM_PERSISTENT_DEV_FLAG;
  if (readOnly) flags |= DmFlag.DM_READONLY_FLAG;
  const req: DmRunRequest = { dev, flags, target_count: targets.length, payload, label: name };
  ctx.control.run('DM_TABLE_LOAD', req);
}

/** The targets, checked, as dm_target_specs in the control node's scratch buffer. */
function tablePayload(ctx: DmContext, targets: readonly Target[]): Uint8Array {
  if (targets.length === 0) throw new InvalidArgumentError('table', '', 'needs at least one target (the kernel refuses an empty load)');
  const params = checkedTableParams(targets);
  const specs: DmTargetSpecIn[] = [];
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i] as Target;
    specs.push({ sector_start: t.startSector, length: t.lengthSectors, target_type: t.type, params: params[i] as string });
  }
  return encodeTargetSpecs(specs, ctx.control);
}
