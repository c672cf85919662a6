// DM_DEV_CREATE, then (with a table) TABLE_LOAD addressed by the new dev, and resume; libdevmapper's
// sequence (captured `dmsetup create`, plain and --readonly). A table the kernel refuses leaves no half-made device behind: we remove
// it as libdevmapper does (captured: a bad target type, bad linear arguments) and rethrow the load's error.
import { DmError } from '../../ioctl/errors.js';
import type { DmContext } from '../context.js';
import { infoFromHeader, type DeviceInfo } from '../info.js';
import { deviceName, deviceUuid, type DeviceName, type DeviceUuid } from '../names.js';
import type { Target } from '../targets.js';
import { udevEventNr } from '../udev.js';
import { loadTable } from './table-load.js';
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

export async function create(ctx: DmContext, name: DeviceName, opts: CreateOptions = {}): Promise<DeviceInfo> {
  // Typed callers pass checked names; a JavaScript caller gets the same refusal before any ioctl.
  deviceName(name);
  if (opts.uuid !== undefined) deviceUuid(opts.uuid);
  const reply = ctx.control.run('DM_DEV_CREATE', {
    name,
    uuid: opts.uuid ?? '',
    event_nr: udevEventNr(ctx.udev, 'create', opts.udevFlags),
  });
  const created = infoFromHeader(reply.header);
  if (!opts.table) return created;
  try {
    loadTable(ctx, { dev: created.dev }, opts.table, { readOnly: opts.readOnly ?? false, label: name });
  } catch (err) {
    // Best effort: the load's error is the one the caller needs; a failed cleanup must not hide it.
    try {
      await removeDevice(ctx, { name }, { noNode: true });
    } catch (cleanupErr) {
      if (!(cleanupErr instanceof DmError)) throw cleanupErr;
    }
    throw err;
  }
  return resume(ctx, { name }, { readOnly: opts.readOnly ?? false, noNode: opts.noNode ?? false, udevFlags: opts.udevFlags });
}
