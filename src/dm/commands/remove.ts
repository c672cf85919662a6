// DM_DEV_REMOVE, with libdevmapper's options: retry while the device is briefly busy (--retry),
// deferred remove (the kernel removes it on last close), and force (swap in an error table first so
// that openers fail fast instead of hanging on I/O).
import { setTimeout as sleep } from 'node:timers/promises';
import { DmError } from '../../ioctl/errors.js';
import { log } from '../../ioctl/log.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import { encodeTargetMsg } from '../../structs/target-msg.js';
import { sectors } from '../../structs/units.js';
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

/** Removes the device; resolves with its last state (deferredRemove set when it was only scheduled). */
export async function removeDevice(ctx: DmContext, ref: DeviceRef, opts: RemoveOptions = {}): Promise<DeviceInfo> {
  if (opts.force) await errorOut(ctx, ref);
  const policy = opts.retry === true ? DEFAULT_REMOVE_RETRY : opts.retry || undefined;
  const req = addressWith(ref, opts.deferred ? DmFlag.DM_DEFERRED_REMOVE : 0, {
    event_nr: udevEventNr(ctx.udev, 'remove', opts.udevFlags),
  });
  for (let attempt = 1; ; attempt++) {
    try {
      // DM_DEV_REMOVE answers at once (EBUSY rather than waiting): only the backoff between
      // retries takes time, and that is a timer, so the event loop stays free.
      const reply = ctx.control.run('DM_DEV_REMOVE', req);
      const info = infoFromHeader(reply.header);
      // Still there with DM_DEFERRED_REMOVE set: only scheduled; its node stays until it goes.
      if (!opts.noNode && !info.deferredRemove) {
        await nodeAfterRemove(ctx, info.name || ('name' in ref ? ref.name : ''), reply.header.flags);
      }
      return info;
    } catch (err) {
      if (!(err instanceof DmError) || err.code !== 'EBUSY' || !policy || attempt >= policy.attempts) throw err;
      const delayMs = Math.min(policy.firstDelayMs * 2 ** (attempt - 1), policy.maxDelayMs);
      log.info('device busy: retrying DM_DEV_REMOVE', { device: err.device, attempt, of: policy.attempts, delay_ms: delayMs });
      await sleep(delayMs);
    }
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
