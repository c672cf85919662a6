// DM_VERSION: the driver's interface version.
import type { DmContext } from '../context.js';

export function version(ctx: DmContext): [number, number, number] {
  const [a, b, c] = ctx.control.run('DM_VERSION', {}).header.version;
  return [a, b, c];
}
