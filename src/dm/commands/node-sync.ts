// Keeping /dev/mapper in step with the kernel after resume, remove and rename: where udev runs we
// wait (bounded) for its rules to act on the uevent the command generated, then fill in whatever it
// did not do; without udev we do it at once.
import { DM_CONTROL_NODE, DmFlag } from '../../structs/dm-ioctl.js';
import type { DevT } from '../../structs/dev.js';
import type { DmContext } from '../context.js';
import type { DeviceInfo } from '../info.js';
import { waitUntil } from '../udev.js';

/** udev acts only on a uevent the kernel generated (DM_UEVENT_GENERATED_FLAG in the reply). */
function udevWillAct(ctx: DmContext, replyFlags: number): boolean {
  return ctx.udev.running && (replyFlags & DmFlag.DM_UEVENT_GENERATED_FLAG) !== 0;
}

/**
 * A device another tool named `control` (the kernel may allow it) gets no node: its node would
 * be /dev/mapper/control, the control node itself.
 */
const hasNode = (name: string): boolean => name !== '' && name !== DM_CONTROL_NODE;

/**
 * After a resume, a remove: the node's update. Without udev to wait for it is done at once and the
 * answer is undefined, so that the snapshot hot path takes no promise; else the promise of the
 * wait and what follows it.
 */
export function nodeAfterResume(ctx: DmContext, info: DeviceInfo, replyFlags: number): Promise<void> | undefined {
  return nodeAfterAdd(ctx, info.name, info.dev, replyFlags);
}

function nodeAfterAdd(ctx: DmContext, name: string, dev: DevT, replyFlags: number): Promise<void> | undefined {
  if (!hasNode(name)) return undefined;
  if (udevWillAct(ctx, replyFlags)) return addUnlessUdevDoes(ctx, name, dev);
  if (!ctx.udev.running || !ctx.nodes.exists(name)) ctx.nodes.add(name, dev);
  return undefined;
}

async function addUnlessUdevDoes(ctx: DmContext, name: string, dev: DevT): Promise<void> {
  if (await waitUntil(() => ctx.nodes.exists(name), ctx.udev.waitMs)) return;
  if (!ctx.nodes.exists(name)) ctx.nodes.add(name, dev);
}

export function nodeAfterRemove(ctx: DmContext, name: string, replyFlags: number): Promise<void> | undefined {
  if (!hasNode(name)) return undefined;
  if (udevWillAct(ctx, replyFlags)) return removeUnlessUdevDoes(ctx, name);
  ctx.nodes.remove(name);
  return undefined;
}

async function removeUnlessUdevDoes(ctx: DmContext, name: string): Promise<void> {
  if (await waitUntil(() => !ctx.nodes.exists(name), ctx.udev.waitMs)) return;
  ctx.nodes.remove(name);
}

export async function nodeAfterRename(ctx: DmContext, oldName: string, newName: string, dev: DevT, replyFlags: number): Promise<void> {
  if (!hasNode(oldName) || !hasNode(newName)) {
    await nodeAfterRemove(ctx, oldName, replyFlags);
    await nodeAfterAdd(ctx, newName, dev, replyFlags);
    return;
  }
  if (udevWillAct(ctx, replyFlags) && (await waitUntil(() => ctx.nodes.exists(newName), ctx.udev.waitMs))) {
    await waitUntil(() => !ctx.nodes.exists(oldName), ctx.udev.waitMs);
    return;
  }
  ctx.nodes.rename(oldName, newName, dev);
}
