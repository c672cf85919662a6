// DM_REMOVE_ALL: removes every device that is not open (deferred: schedules the open ones), then
// drops the nodes of the removed ones, as dmsetup remove_all does (captured).
import { DmFlag } from '../../structs/dm-ioctl.js';
import type { DmContext } from '../context.js';
import { mknodes } from './mknodes.js';

export function removeAll(ctx: DmContext, opts: { deferred?: boolean } = {}): void {
  ctx.control.run('DM_REMOVE_ALL', { flags: opts.deferred ? DmFlag.DM_DEFERRED_REMOVE : 0 });
  if (!ctx.udev.running) mknodes(ctx); // with udev, its rules act on each removal's uevent
}
