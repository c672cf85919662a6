// DM_DEV_SUSPEND: with DM_SUSPEND_FLAG it suspends; without it, it resumes (swapping in an inactive
// table). A suspend runs off the event loop (a flushing suspend waits for in-flight I/O); a resume
// returns promptly, so it stays on the calling thread: the worker-thread hop cost a snapshot cycle
// several times the ioctl itself (bench P1).
import { DmFlag } from '../../structs/dm-ioctl.js';
import { addressWith, type DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';
import { udevEventNr } from '../udev.js';
import { nodeAfterResume } from './node-sync.js';

export interface SuspendOptions {
  noFlush?: boolean;
  skipLockfs?: boolean;
}

export async function suspend(ctx: DmContext, ref: DeviceRef, opts: SuspendOptions = {}): Promise<DeviceInfo> {
  let flags = DmFlag.DM_SUSPEND_FLAG;
  if (opts.noFlush) flags |= DmFlag.DM_NOFLUSH_FLAG;
  if (opts.skipLockfs) flags |= DmFlag.DM_SKIP_LOCKFS_FLAG;
  return infoFromHeader((await ctx.control.runAsync('DM_DEV_SUSPEND', addressWith(ref, flags))).header);
}

export interface ResumeOptions {
  noFlush?: boolean;
  /** Sent with the resume of a read-only create, as libdevmapper does (captured `dmsetup create --readonly`). */
  readOnly?: boolean;
  noNode?: boolean;
  udevFlags?: number;
}

/**
 * Resolves at once, with no promise taken on the way, when the node needs no wait for udev (the
 * snapshot hot path, bench P1); errors reject, as from an async function.
 */
export function resume(ctx: DmContext, ref: DeviceRef, opts: ResumeOptions = {}): Promise<DeviceInfo> {
  try {
    let flags = 0;
    if (opts.noFlush) flags |= DmFlag.DM_NOFLUSH_FLAG;
    if (opts.readOnly) flags |= DmFlag.DM_READONLY_FLAG;
    const reply = ctx.control.run('DM_DEV_SUSPEND', addressWith(ref, flags, { event_nr: udevEventNr(ctx.udev, 'resume', opts.udevFlags) }));
    const info = infoFromHeader(reply.header);
    const node = opts.noNode ? undefined : nodeAfterResume(ctx, info, reply.header.flags);
    return node === undefined ? Promise.resolve(info) : node.then(() => info);
  } catch (err) {
    return Promise.reject(err);
  }
}
