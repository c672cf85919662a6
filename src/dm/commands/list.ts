// DM_LIST_DEVICES: every device's name and dev; event_nr from kernels with the tail (4.38+), and the
// uuid when asked with DM_UUID_FLAG (off by default, as `dmsetup ls`: the golden replies have none).
// Three shapes of one reply: entries (list), names alone (listNames), and a view that reads each
// field on demand (listView). On 10,000 devices the ioctl is the cheap part; making an object per
// device is not (bench P2).
import { DmNameListView, newNameListCache, type DmNameListCache } from '../../structs/name-list.js';
import type { DmControl } from '../../ioctl/dm-control.js';
import { decodeDevLow32, type DevT } from '../../structs/dev.js';
import { DmFlag } from '../../structs/dm-ioctl.js';
import type { DmContext } from '../context.js';
import type { DeviceListEntry } from '../info.js';
import type { DeviceName, DeviceUuid } from '../names.js';

// The kernel's names and uuids are valid by construction: typed, not checked again.
function reply(ctx: DmContext, opts: { uuids?: boolean }): DmNameListView {
  return DmNameListView.of(ctx.control.run('DM_LIST_DEVICES', { flags: opts.uuids ? DmFlag.DM_UUID_FLAG : 0 }).payload);
}

export function list(ctx: DmContext, opts: { uuids?: boolean } = {}): DeviceListEntry[] {
  const v = reply(ctx, opts);
  const out = new Array<DeviceListEntry>(v.length);
  for (let i = 0; i < v.length; i++) out[i] = entryOf(v, i);
  return out;
}

/** Per control node: the last listNames() reply, so that an unchanged name is not decoded again. */
const lastNames = new WeakMap<DmControl, DmNameListCache>();

/** Every device's name and nothing else: one string per device. */
export function listNames(ctx: DmContext): DeviceName[] {
  let cache = lastNames.get(ctx.control);
  if (cache === undefined) {
    cache = newNameListCache();
    lastNames.set(ctx.control, cache);
  }
  const payload = ctx.control.run('DM_LIST_DEVICES', { flags: 0 }).payload;
  return DmNameListView.of(payload, cache.scratch).names(cache) as DeviceName[];
}

/** The reply kept (copied out of the control node's reused buffer), read on demand. */
export function listView(ctx: DmContext, opts: { uuids?: boolean } = {}): DeviceListView {
  const payload = ctx.control.run('DM_LIST_DEVICES', { flags: opts.uuids ? DmFlag.DM_UUID_FLAG : 0 }).payload;
  return new DeviceListView(DmNameListView.of(Buffer.from(payload)));
}

function entryOf(v: DmNameListView, i: number): DeviceListEntry {
  const entry: DeviceListEntry = { name: v.name(i) as DeviceName, dev: decodeDevLow32(v.devLow(i)) };
  const eventNr = v.event_nr(i);
  if (eventNr !== undefined) entry.eventNr = eventNr;
  const uuid = v.uuid(i);
  if (uuid !== undefined && uuid !== '') entry.uuid = uuid as DeviceUuid;
  return entry;
}

/**
 * One DM_LIST_DEVICES reply, its fields read when asked: `length`, `name(i)`, `dev(i)`,
 * `eventNr(i)`, `uuid(i)`, `indexOf(name)` (compares bytes, makes no string), `names()`, and
 * iteration as DeviceListEntry. It holds its own copy of the reply: later lists do not change it.
 */
export class DeviceListView implements Iterable<DeviceListEntry> {
  constructor(private readonly v: DmNameListView) {}

  get length(): number {
    return this.v.length;
  }
  name(i: number): DeviceName {
    return this.v.name(i) as DeviceName;
  }
  dev(i: number): DevT {
    return decodeDevLow32(this.v.devLow(i));
  }
  /** Only from kernels with the dm_name_list tail (4.38+). */
  eventNr(i: number): number | undefined {
    return this.v.event_nr(i);
  }
  /** Only when listed with `uuids` and the device has one. */
  uuid(i: number): DeviceUuid | undefined {
    const uuid = this.v.uuid(i);
    return uuid === undefined || uuid === '' ? undefined : (uuid as DeviceUuid);
  }
  /** The index of the device named `name`, or -1. */
  indexOf(name: string): number {
    return this.v.indexOf(name);
  }
  has(name: string): boolean {
    return this.v.indexOf(name) >= 0;
  }
  /** Every name, in the kernel's order. */
  names(): DeviceName[] {
    return this.v.names() as DeviceName[];
  }
  entry(i: number): DeviceListEntry {
    return entryOf(this.v, i);
  }
  *[Symbol.iterator](): Iterator<DeviceListEntry> {
    for (let i = 0; i < this.v.length; i++) yield entryOf(this.v, i);
  }
}
