// DM_LIST_VERSIONS: every target type the kernel has loaded, with its version.
import { decodeTargetVersions, type DmTargetVersion } from '../../structs/target-versions.js';
import type { DmContext } from '../context.js';

export function listVersions(ctx: DmContext): DmTargetVersion[] {
  return decodeTargetVersions(ctx.control.run('DM_LIST_VERSIONS', {}).payload);
}
