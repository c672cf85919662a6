// What every command module shares: the control node, the node manager, the udev policy, and how a
// DeviceRef becomes the header fields that address a device.
import type { DmControl, DmRunRequest } from '../ioctl/dm-control.js';
import { encodeDev } from '../structs/dev.js';
import { DmFlag } from '../structs/dm-ioctl.js';
import type { NodeManager } from './nodes.js';
import { checkDeviceRef, describeRef, type DeviceRef } from './names.js';
import type { UdevPolicy } from './udev.js';

export interface DmContext {
  readonly control: DmControl;
  readonly nodes: NodeManager;
  readonly udev: UdevPolicy;
}

/**
 * The header fields addressing `ref`, validated. By dev, libdevmapper also sets
 * DM_PERSISTENT_DEV_FLAG (the captured `dmsetup info -j -m`: DEV_STATUS by major:minor); the kernel looks the device up
 * by dev either way, and we match its bytes.
 */
export function addressOf(ref: DeviceRef): Pick<DmRunRequest, 'name' | 'uuid' | 'dev' | 'flags' | 'label'> {
  checkDeviceRef(ref);
  if ('name' in ref) return { name: ref.name, flags: 0 };
  if ('uuid' in ref) return { uuid: ref.uuid, flags: 0 };
  return { dev: encodeDev(ref.dev), flags: DmFlag.DM_PERSISTENT_DEV_FLAG, label: describeRef(ref) };
}

/** `addressOf(ref)` with extra flags ORed in. */
export function addressWith(ref: DeviceRef, flags: number, rest?: Omit<DmRunRequest, 'name' | 'uuid' | 'dev' | 'flags'>): DmRunRequest {
  const req: DmRunRequest = addressOf(ref);
  req.flags = ((req.flags ?? 0) | flags) >>> 0;
  // Assigned, not spread: this runs on every command of the hot path.
  if (rest) Object.assign(req, rest);
  return req;
}
