// The typed device-mapper API: one method per DM command over one open control node. Each method
// is a thin front for its module in commands/, which holds the command's flags and sequence.
import { DmControl, type DmControlOptions } from '../ioctl/dm-control.js';
import type { Transport } from '../ioctl/transport.js';
import type { DevT } from '../structs/dev.js';
import type { DmTargetVersion } from '../structs/target-versions.js';
import type { DmContext } from './context.js';
import type { DeviceInfo, DeviceListEntry } from './info.js';
import type { DeviceName, DeviceRef, DeviceUuid } from './names.js';
import { MapperNodes, type NodeManager } from './nodes.js';
import type { Target } from './targets.js';
import { detectUdev, type UdevMode, type UdevPolicy } from './udev.js';
import { armPoll } from './commands/arm-poll.js';
import { create, type CreateOptions } from './commands/create.js';
import { deps } from './commands/deps.js';
import { info } from './commands/info.js';
import { list, listNames, listView, type DeviceListView } from './commands/list.js';
import { listVersions } from './commands/list-versions.js';
import { message } from './commands/message.js';
import { mknodes } from './commands/mknodes.js';
import { cancelDeferredRemove, removeDevice, type RemoveOptions } from './commands/remove.js';
import { removeAll } from './commands/remove-all.js';
import { rename, setUuid } from './commands/rename.js';
import { setGeometry, type Geometry } from './commands/set-geometry.js';
import { status, table, tableLines, type TargetStatus } from './commands/status.js';
import { resume, suspend, type ResumeOptions, type SuspendOptions } from './commands/suspend.js';
import { clearTable } from './commands/table-clear.js';
import { loadTable } from './commands/table-load.js';
import { targetVersion } from './commands/target-version.js';
import { version } from './commands/version.js';
import { waitEvent } from './commands/wait.js';

export interface DeviceMapperOptions {
  transport?: Transport;
  /** Where `mapper/<name>` nodes go; default /dev. */
  devDir?: string;
  /** 'auto': defer to udev when /run/udev/control exists (and devDir is /dev). */
  udev?: UdevMode;
  /** How long to wait for udev's node before making it ourselves (default 5 s). */
  udevWaitMs?: number;
  /** Options for opening /dev/mapper/control (path, injected system calls for tests). */
  control?: DmControlOptions;
  /** An already open control node (its transport wins over `transport`). */
  controlNode?: DmControl;
  /** Node operations (tests that cannot mknod pass their own). */
  nodes?: NodeManager;
}

const toVoid = (): void => undefined;

export class DeviceMapper {
  private constructor(private readonly ctx: DmContext) {}

  static open(opts: DeviceMapperOptions = {}): DeviceMapper {
    const devDir = opts.devDir ?? '/dev';
    const udev: UdevPolicy = { running: detectUdev(opts.udev ?? 'auto', devDir), waitMs: opts.udevWaitMs ?? 5000 };
    const control = opts.controlNode ?? DmControl.open({ ...opts.control, ...(opts.transport ? { transport: opts.transport } : {}) });
    return new DeviceMapper({ control, nodes: opts.nodes ?? new MapperNodes(devDir), udev });
  }

  /** The driver version read when the control node was opened. */
  get driverVersion(): readonly [number, number, number] {
    return this.ctx.control.driverVersion;
  }
  /** Whether this instance defers /dev/mapper to udev. */
  get udevRunning(): boolean {
    return this.ctx.udev.running;
  }
  get mapperDir(): string {
    return this.ctx.nodes.mapperDir;
  }

  version(): [number, number, number] {
    return version(this.ctx);
  }
  list(opts?: { uuids?: boolean }): DeviceListEntry[] {
    return list(this.ctx, opts);
  }
  /** DM_LIST_DEVICES, names only: the cheapest way to have every name as a string. */
  listNames(): DeviceName[] {
    return listNames(this.ctx);
  }
  /** DM_LIST_DEVICES kept as one reply whose fields are read on demand (find one name, count). */
  listView(opts?: { uuids?: boolean }): DeviceListView {
    return listView(this.ctx, opts);
  }
  create(name: DeviceName, opts?: CreateOptions): Promise<DeviceInfo> {
    return create(this.ctx, name, opts);
  }
  remove(ref: DeviceRef, opts?: RemoveOptions): Promise<void> {
    // Not async: no extra promise and tick on the snapshot cycle's path (bench P1).
    return removeDevice(this.ctx, ref, opts).then(toVoid);
  }
  cancelDeferredRemove(ref: DeviceRef): void {
    cancelDeferredRemove(this.ctx, ref);
  }
  rename(ref: DeviceRef, newName: DeviceName, opts?: { udevFlags?: number }): Promise<DeviceInfo> {
    return rename(this.ctx, ref, newName, opts);
  }
  setUuid(ref: DeviceRef, uuid: DeviceUuid, opts?: { udevFlags?: number }): DeviceInfo {
    return setUuid(this.ctx, ref, uuid, opts);
  }
  suspend(ref: DeviceRef, opts?: SuspendOptions): Promise<DeviceInfo> {
    return suspend(this.ctx, ref, opts);
  }
  resume(ref: DeviceRef, opts?: ResumeOptions): Promise<DeviceInfo> {
    return resume(this.ctx, ref, opts);
  }
  info(ref: DeviceRef): DeviceInfo | null {
    return info(this.ctx, ref);
  }
  loadTable(ref: DeviceRef, targets: Target[], opts?: { readOnly?: boolean }): DeviceInfo {
    return loadTable(this.ctx, ref, targets, opts);
  }
  clearTable(ref: DeviceRef): DeviceInfo {
    return clearTable(this.ctx, ref);
  }
  deps(ref: DeviceRef): DevT[] {
    return deps(this.ctx, ref);
  }
  table(ref: DeviceRef, opts?: { inactive?: boolean }): Target[] {
    return table(this.ctx, ref, opts);
  }
  /** The table as the kernel's text lines, untouched (what `dmsetup table` prints). */
  tableLines(ref: DeviceRef, opts?: { inactive?: boolean }): TargetStatus[] {
    return tableLines(this.ctx, ref, opts);
  }
  status(ref: DeviceRef, opts?: { noFlush?: boolean; inactive?: boolean }): TargetStatus[] {
    return status(this.ctx, ref, opts);
  }
  waitEvent(ref: DeviceRef, eventNr: number): Promise<DeviceInfo> {
    return waitEvent(this.ctx, ref, eventNr);
  }
  listVersions(): DmTargetVersion[] {
    return listVersions(this.ctx);
  }
  targetVersion(type: string): [number, number, number] | null {
    return targetVersion(this.ctx, type);
  }
  message(ref: DeviceRef, sector: bigint, msg: string): string {
    return message(this.ctx, ref, sector, msg);
  }
  setGeometry(ref: DeviceRef, g: Geometry): void {
    setGeometry(this.ctx, ref, g);
  }
  armPoll(): void {
    armPoll(this.ctx);
  }
  /** Makes /dev/mapper match the kernel: for one device, or all (stale nodes removed). */
  mknodes(name?: DeviceName): void {
    mknodes(this.ctx, name);
  }
  removeAll(opts?: { deferred?: boolean }): void {
    removeAll(this.ctx, opts);
  }
  close(): void {
    this.ctx.control.close();
  }
}
