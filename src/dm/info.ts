// What the kernel says about one device: the dm_ioctl header of a DEV_STATUS-like reply, typed.
import { decodeDev, type DevT } from '../structs/dev.js';
import { DmFlag, type DmIoctl } from '../structs/dm-ioctl.js';
import type { DeviceName, DeviceUuid } from './names.js';

export interface DeviceInfo {
  /** The kernel's names are valid by construction: typed, not checked again. */
  name: DeviceName;
  /** '' when the device has none. */
  uuid: DeviceUuid | '';
  dev: DevT;
  openCount: number;
  eventNr: number;
  targetCount: number;
  readOnly: boolean;
  suspended: boolean;
  liveTable: boolean;
  inactiveTable: boolean;
  /** A deferred remove is pending: the device goes when its last opener closes it. */
  deferredRemove: boolean;
}

export interface DeviceListEntry {
  name: DeviceName;
  dev: DevT;
  /** Only from kernels with the dm_name_list tail (4.38+). */
  eventNr?: number;
  uuid?: DeviceUuid;
}

/** A reply header as DeviceInfo (__dev_status fills these for every device command). */
export function infoFromHeader(h: DmIoctl): DeviceInfo {
  return {
    name: h.name as DeviceName,
    uuid: h.uuid as DeviceUuid | '',
    dev: decodeDev(h.dev),
    openCount: h.open_count,
    eventNr: h.event_nr,
    targetCount: h.target_count,
    readOnly: (h.flags & DmFlag.DM_READONLY_FLAG) !== 0,
    suspended: (h.flags & DmFlag.DM_SUSPEND_FLAG) !== 0,
    liveTable: (h.flags & DmFlag.DM_ACTIVE_PRESENT_FLAG) !== 0,
    inactiveTable: (h.flags & DmFlag.DM_INACTIVE_PRESENT_FLAG) !== 0,
    deferredRemove: (h.flags & DmFlag.DM_DEFERRED_REMOVE) !== 0,
  };
}
