// DM_TABLE_LOAD: the inactive table, swapped in by the next resume.
import { DmFlag } from '../../structs/dm-ioctl.js';
import { encodeTargetSpecs } from '../../structs/target-spec.js';
import { addressWith, type DmContext } from '../context.js';
import { InvalidArgumentError } from '../errors.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';
import { checkTable, formatTargetParams, type Target } from '../targets.js';

export function loadTable(
  ctx: DmContext,
  ref: DeviceRef,
  targets: readonly Target[],
  opts: { readOnly?: boolean; label?: string } = {},
): DeviceInfo {
  if (targets.length === 0) throw new InvalidArgumentError('table', '', 'needs at least one target (the kernel refuses an empty load)');
  checkTable(targets);
  const payload = encodeTargetSpecs(
    targets.map((t) => ({ sector_start: t.startSector, length: t.lengthSectors, target_type: t.type, params: formatTargetParams(t) })),
  );
  const req = addressWith(ref, opts.readOnly ? DmFlag.DM_READONLY_FLAG : 0, { target_count: targets.length, payload });
  if (opts.label !== undefined) req.label = opts.label;
  return infoFromHeader(ctx.control.run('DM_TABLE_LOAD', req).header);
}
