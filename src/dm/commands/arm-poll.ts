// DM_DEV_ARM_POLL (4.36+): re-arms poll() on the control fd for the next device event.
import type { DmContext } from '../context.js';

export function armPoll(ctx: DmContext): void {
  ctx.control.run('DM_DEV_ARM_POLL', {});
}
