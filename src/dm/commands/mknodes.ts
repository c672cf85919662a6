// dmsetup mknodes without udev: brings /dev/mapper in line with the kernel, as libdevmapper's
// dm_task_update_nodes does (captured `dmsetup remove_all`): a node whose device is gone (DEV_STATUS with
// DM_SKIP_BDGET_FLAG -> ENXIO) is unlinked, and every device that exists gets its node.
import { DmFlag } from '../../structs/dm-ioctl.js';
import type { DmContext } from '../context.js';
import { deviceName, type DeviceName } from '../names.js';
import { info } from './info.js';
import { list } from './list.js';

export function mknodes(ctx: DmContext, name?: DeviceName): void {
  if (name !== undefined) {
    deviceName(name);
    const found = info(ctx, { name }, DmFlag.DM_SKIP_BDGET_FLAG);
    if (found) ctx.nodes.add(name, found.dev);
    else ctx.nodes.remove(name);
    return;
  }
  for (const node of ctx.nodes.list()) {
    if (!isDeviceName(node)) continue;
    if (info(ctx, { name: node as DeviceName }, DmFlag.DM_SKIP_BDGET_FLAG) === null) ctx.nodes.remove(node);
  }
  // A device another tool named `control` gets no node (deviceName refuses it): that is the control node.
  for (const e of list(ctx)) if (isDeviceName(e.name)) ctx.nodes.add(e.name, e.dev);
}

function isDeviceName(s: string): boolean {
  try {
    deviceName(s);
    return true;
  } catch {
    return false;
  }
}
