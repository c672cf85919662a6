// DM_DEV_REMOVE, with libdevmapper's options: retry while the device is briefly busy (--retry),
// deferred remove (the kernel removes it on last close), and force (swap in an error table first so
// that openers fail fast instead of hanging on I/O).
import { setTimeout as sleep } from 'node:timers/promises';
import { DmError } from '../../ioctl/errors.js';
import { log } from '../../ioctl/log.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import { encodeTargetMsg } from '../../structs/target-msg.js';
import { sectors } from '../../structs/units.js';
import type { DmRunRequest } from '../../ioctl/dm-control.js';
import { addressWith, type DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import type { DeviceRef } from '../names.js';
import { udevEventNr } from '../udev.js';
import { nodeAfterRemove } from './node-sync.js';
import { loadTable } from './table-load.js';
import { resume } from './suspend.js';
import { table } from './status.js';

/** How removes retry EBUSY: libdevmapper tries 25 times, 200 ms apart; we back off up to that. */
export interface RetryPolicy {
  attempts: number;
  firstDelayMs: number;
  maxDelayMs: number;
}
export const DEFAULT_REMOVE_RETRY: RetryPolicy = { attempts: 25, firstDelayMs: 10, maxDelayMs: 250 };

export interface RemoveOptions {
  /** Retry on EBUSY (a udev probe or a closing opener), with DEFAULT_REMOVE_RETRY or the given policy. */
  retry?: boolean | RetryPolicy;
  /** DM_DEFERRED_REMOVE: if the device is open, the kernel removes it when the last opener closes. */
  deferred?: boolean;
  /** Replace the table with `error` before removing, so that I/O fails instead of blocking the remove. */
  force?: boolean;
  /** Leave /dev/mapper alone (create's cleanup of a device that never had a node). */
  noNode?: boolean;
  udevFlags?: number;
}

/**
 * Removes the device; resolves with its last state (deferredRemove set when it was only scheduled).
 * Not an async function: a remove that succeeds at once with no udev to wait for resolves with no
 * promise taken on the way (bench P1); retries and --force go through the async path.
 */
export function removeDevice(ctx: DmContext, ref: DeviceRef, opts: RemoveOptions = {}): Promise<DeviceInfo> {
  if (opts.force) return removeForced(ctx, ref, opts);
  try {
    const req = removeRequest(ctx, ref, opts);
    try {
      return removeOnce(ctx, ref, req, opts);
    } catch (err) {
      return retryRemove(ctx, ref, req, opts, err);
    }
  } catch (err) {
    return Promise.reject(err);
  }
}

function removeRequest(ctx: DmContext, ref: DeviceRef, opts: RemoveOptions): DmRunRequest {
  return addressWith(ref, opts.deferred ? DmFlag.DM_DEFERRED_REMOVE : 0, {
    event_nr: udevEventNr(ctx.udev, 'remove', opts.udevFlags),
  });
}

/**
 * One DM_DEV_REMOVE and the node's removal. DM_DEV_REMOVE answers at once (EBUSY rather than
 * waiting): only the backoff between retries takes time, and that is a timer, so the event loop
 * stays free. Throws the kernel's refusal.
 */
function removeOnce(ctx: DmContext, ref: DeviceRef, req: DmRunRequest, opts: RemoveOptions): Promise<DeviceInfo> {
  const reply = ctx.control.run('DM_DEV_REMOVE', req);
  const info = infoFromHeader(reply.header);
  // Still there with DM_DEFERRED_REMOVE set: only scheduled; its node stays until it goes.
  if (!opts.noNode && !info.deferredRemove) {
    const node = nodeAfterRemove(ctx, info.name || ('name' in ref ? ref.name : ''), reply.header.flags);
    if (node !== undefined) return node.then(() => info);
  }
  return Promise.resolve(info);
}

/** After attempt 1 failed with `err`: retries EBUSY as the policy says, else rethrows. */
async function retryRemove(ctx: DmContext, ref: DeviceRef, req: DmRunRequest, opts: RemoveOptions, err: unknown): Promise<DeviceInfo> {
  const policy = opts.retry === true ? DEFAULT_REMOVE_RETRY : opts.retry || undefined;
  for (let attempt = 1; ; attempt++) {
    if (!(err instanceof DmError) || err.code !== 'EBUSY' || !policy || attempt >= policy.attempts) throw err;
    const delayMs = Math.min(policy.firstDelayMs * 2 ** (attempt - 1), policy.maxDelayMs);
    log.info('device busy: retrying DM_DEV_REMOVE', { device: err.device, attempt, of: policy.attempts, delay_ms: delayMs });
    await sleep(delayMs);
    try {
      return await removeOnce(ctx, ref, req, opts);
    } catch (next) {
      err = next;
    }
  }
}

async function removeForced(ctx: DmContext, ref: DeviceRef, opts: RemoveOptions): Promise<DeviceInfo> {
  await errorOut(ctx, ref);
  const req = removeRequest(ctx, ref, opts);
  try {
    return await removeOnce(ctx, ref, req, opts);
  } catch (err) {
    return retryRemove(ctx, ref, req, opts, err);
  }
}

/** dmsetup remove --force: load an `error` table as long as the live one and resume into it. */
async function errorOut(ctx: DmContext, ref: DeviceRef): Promise<void> {
  const total = table(ctx, ref).reduce((sum, t) => sum + t.lengthSectors, 0n);
  if (total === 0n) return;
  loadTable(ctx, ref, [{ type: 'error', startSector: sectors(0), lengthSectors: sectors(total) }]);
  await resume(ctx, ref, { noNode: true });
}

/** Cancels a pending deferred remove: the device-level message `@cancel_deferred_remove` at sector 0. */
export function cancelDeferredRemove(ctx: DmContext, ref: DeviceRef): void {
  ctx.control.run('DM_TARGET_MSG', addressWith(ref, 0, { payload: encodeTargetMsg(0n, '@cancel_deferred_remove') }));
}
