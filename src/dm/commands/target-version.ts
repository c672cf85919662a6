// DM_GET_TARGET_VERSION (4.41+): one target type's version, loading its module if needed; the
// kernel answers EINVAL for a type it does not know. Older drivers: looked up in LIST_VERSIONS.
import { DmError } from '../../ioctl/errors.js';
import { DM_COMMAND_MIN_VERSION } from '../../structs/dm-ioctl.js';
import { decodeTargetVersions, targetVersionRequest } from '../../structs/target-versions.js';
import type { DmContext } from '../context.js';
import { listVersions } from './list-versions.js';

function atLeast(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) if ((v[i] ?? 0) !== (min[i] ?? 0)) return (v[i] ?? 0) > (min[i] ?? 0);
  return true;
}

export function targetVersion(ctx: DmContext, type: string): [number, number, number] | null {
  const req = targetVersionRequest(type);
  if (!atLeast(ctx.control.driverVersion, DM_COMMAND_MIN_VERSION.DM_GET_TARGET_VERSION)) {
    return listVersions(ctx).find((t) => t.name === type)?.version ?? null;
  }
  try {
    const found = decodeTargetVersions(ctx.control.run('DM_GET_TARGET_VERSION', { name: req.name, payload: req.payload }).payload);
    return found.find((t) => t.name === type)?.version ?? null;
  } catch (err) {
    if (err instanceof DmError && (err.code === 'EINVAL' || err.code === 'ENOENT')) return null;
    throw err;
  }
}
