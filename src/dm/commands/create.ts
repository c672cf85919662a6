// DM_DEV_CREATE, then (with a table) TABLE_LOAD addressed by the new dev, and resume; libdevmapper's
// sequence (captured `dmsetup create`, plain and --readonly). A table the kernel refuses leaves no half-made device behind: we remove
// it as libdevmapper does (captured: a bad target type, bad linear arguments) and rethrow the load's error.
import { DmError } from '../../ioctl/errors.js';
import type { DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import { deviceName, deviceUuid, type DeviceName, type DeviceUuid } from '../names.js';
import type { Target } from '../targets.js';
import { udevEventNr } from '../udev.js';
import { loadNewTable } from './table-load.js';
import { removeDevice } from './remove.js';
import { resume } from './suspend.js';

export interface CreateOptions {
  uuid?: DeviceUuid;
  readOnly?: boolean;
  table?: Target[];
  /** Do not make /dev/mapper/<name> after resume. */
  noNode?: boolean;
  /** Extra DM_UDEV_* bits for udev's rules (the Task layer's setCookie flags). */
  udevFlags?: number;
}

/**
 * Not an async function: without udev the whole sequence runs before it returns, and the promise
 * is the resume's (no extra hop per create on the snapshot hot path). Errors reject all the same.
 */
export function create(ctx: DmContext, name: DeviceName, opts: CreateOptions = {}): Promise<DeviceInfo> {
  let dev: bigint;
  try {
    // Typed callers pass checked names; a JavaScript caller gets the same refusal before any ioctl.
    deviceName(name);
    if (opts.uuid !== undefined) deviceUuid(opts.uuid);
    const header = ctx.control.run('DM_DEV_CREATE', {
      name,
      uuid: opts.uuid ?? '',
      event_nr: udevEventNr(ctx.udev, 'create', opts.udevFlags),
    }).header;
    if (!opts.table) return Promise.resolve(infoFromHeader(header));
    dev = header.dev;
  } catch (err) {
    return Promise.reject(err);
  }
  const readOnly = opts.readOnly ?? false;
  try {
    loadNewTable(ctx, dev, name, opts.table, readOnly);
  } catch (err) {
    return removeHalfMade(ctx, name, err);
  }
  return resume(ctx, { name }, { readOnly, noNode: opts.noNode ?? false, udevFlags: opts.udevFlags });
}

/** Removes the device whose table the kernel refused, then rethrows the load's error. */
async function removeHalfMade(ctx: DmContext, name: DeviceName, loadErr: unknown): Promise<never> {
  // Best effort: the load's error is the one the caller needs; a failed cleanup must not hide it.
  try {
    await removeDevice(ctx, { name }, { noNode: true });
  } catch (cleanupErr) {
    if (!(cleanupErr instanceof DmError)) throw cleanupErr;
  }
  throw loadErr;
}
