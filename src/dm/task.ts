// The Task API of Docker's Go devmapper package, for code ported from it: a task collects
// its arguments with setters, run() performs it through DeviceMapper (no second implementation of
// any command), and the getters read the result. Errors are that package's, as classes: ErrTaskRun etc.,
// each carrying the underlying DmError/InvalidArgumentError as `cause`.
// Differences from libdevmapper-backed Go: run() is async; there are no udev semaphore cookies, so
// setCookie() records the udev flags and sets the cookie to 0, and udevWait() has nothing to wait
// for (DeviceMapper itself waits, bounded, for udev's node).
import { DmError } from '../ioctl/errors.js';
import { DeviceMapper } from './device-mapper.js';
import type { DeviceInfo } from './info.js';
import { deviceName, deviceUuid, sectors, type DeviceName, type DeviceUuid } from './names.js';
import { formatTargetParams, parseTarget, type Target } from './targets.js';

/** The Go package's task types, in its order (values as its iota gives them). */
export enum TaskType {
  DeviceCreate,
  DeviceReload,
  DeviceRemove,
  DeviceRemoveAll,
  DeviceSuspend,
  DeviceResume,
  DeviceInfo,
  DeviceDeps,
  DeviceRename,
  DeviceVersion,
  DeviceStatus,
  DeviceTable,
  DeviceWaitevent,
  DeviceList,
  DeviceClear,
  DeviceMknodes,
  DeviceListVersions,
  DeviceTargetMsg,
  DeviceSetGeometry,
}

export enum AddNodeType {
  AddNodeOnResume,
  AddNodeOnCreate,
}

/** The Go package's Info: ints for booleans, as libdevmapper's struct dm_info. */
export interface Info {
  exists: number;
  suspended: number;
  liveTable: number;
  inactiveTable: number;
  openCount: number;
  eventNr: number;
  major: number;
  minor: number;
  readOnly: number;
  targetCount: number;
}

/** Base of the Go package's errors; `cause` is what actually failed. */
export class DmTaskError extends Error {
  override name = 'DmTaskError';
  /** The errno name of the kernel error behind it, when there is one. */
  readonly code?: string;
  constructor(message: string, cause?: unknown) {
    super(cause instanceof Error ? `${message}: ${cause.message}` : message, cause === undefined ? undefined : { cause });
    const code = (cause as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string') this.code = code;
  }
}
const goError = (message: string) =>
  class extends DmTaskError {
    constructor(cause?: unknown) {
      super(message, cause);
    }
  };
export class ErrTaskRun extends goError('dm_task_run failed') {
  override name = 'ErrTaskRun';
}
export class ErrTaskSetName extends goError('dm_task_set_name failed') {
  override name = 'ErrTaskSetName';
}
export class ErrTaskSetMessage extends goError('dm_task_set_message failed') {
  override name = 'ErrTaskSetMessage';
}
export class ErrTaskSetAddNode extends goError('dm_task_set_add_node failed') {
  override name = 'ErrTaskSetAddNode';
}
export class ErrTaskSetRo extends goError('dm_task_set_ro failed') {
  override name = 'ErrTaskSetRo';
}
export class ErrTaskAddTarget extends goError('dm_task_add_target failed') {
  override name = 'ErrTaskAddTarget';
}
export class ErrTaskSetSector extends goError('dm_task_set_sector failed') {
  override name = 'ErrTaskSetSector';
}
export class ErrTaskGetInfo extends goError('dm_task_get_info failed') {
  override name = 'ErrTaskGetInfo';
}
export class ErrTaskGetDriverVersion extends goError('dm_task_get_driver_version failed') {
  override name = 'ErrTaskGetDriverVersion';
}
export class ErrTaskSetCookie extends goError('dm_task_set_cookie failed') {
  override name = 'ErrTaskSetCookie';
}
export class ErrNilCookie extends goError("cookie ptr can't be nil") {
  override name = 'ErrNilCookie';
}
export class ErrInvalidAddNode extends goError('Invalide AddNoce type') {
  override name = 'ErrInvalidAddNode';
}
/** A run that failed with EBUSY; also an ErrTaskRun. */
export class ErrBusy extends ErrTaskRun {
  override name = 'ErrBusy';
  constructor(cause?: unknown) {
    super(cause);
    this.message = cause instanceof Error ? `Device is Busy: ${cause.message}` : 'Device is Busy';
  }
}

let defaultDm: DeviceMapper | undefined;

/** The DeviceMapper tasks use when none is given (opened on first use). */
export function setDefaultDeviceMapper(dm: DeviceMapper | undefined): void {
  defaultDm = dm;
}

export function taskCreate(type: TaskType, dm?: DeviceMapper): Task {
  return new Task(type, dm);
}

/** No semaphore cookies here: DeviceMapper already waited for udev in run(). */
export async function udevWait(_cookie: { value: number } | number): Promise<void> {}

type TargetRow = [start: bigint, length: bigint, targetType: string, params: string];

export class Task {
  private name?: DeviceName;
  private uuid?: DeviceUuid;
  private newName?: DeviceName;
  private message?: string;
  private sector = 0n;
  private eventNr = 0;
  private udevFlags = 0;
  private addNode = AddNodeType.AddNodeOnResume;
  private ro = false;
  private geometry?: { cylinders: number; heads: number; sectors: number; start: number };
  private readonly targets: Target[] = [];
  private info?: DeviceInfo | null;
  private rows: TargetRow[] = [];
  private messageResponse = '';
  private result: unknown;
  private ran = false;

  constructor(
    readonly type: TaskType,
    private readonly dmGiven?: DeviceMapper,
  ) {}

  private get dm(): DeviceMapper {
    if (this.dmGiven) return this.dmGiven;
    defaultDm ??= DeviceMapper.open();
    return defaultDm;
  }

  setName(name: string): void {
    try {
      this.name = deviceName(name);
    } catch (err) {
      throw new ErrTaskSetName(err);
    }
  }
  /** libdevmapper's dm_task_set_uuid (not in the Go package): the uuid DeviceCreate gives the device. */
  setUuid(uuid: string): void {
    try {
      this.uuid = deviceUuid(uuid);
    } catch (err) {
      throw new ErrTaskSetName(err);
    }
  }
  /** libdevmapper's dm_task_set_newname, for DeviceRename. */
  setNewName(name: string): void {
    try {
      this.newName = deviceName(name);
    } catch (err) {
      throw new ErrTaskSetName(err);
    }
  }
  setMessage(message: string): void {
    if (typeof message !== 'string' || message.trim() === '' || message.includes('\0')) throw new ErrTaskSetMessage();
    this.message = message;
  }
  setSector(sector: bigint | number): void {
    try {
      this.sector = sectors(sector, 'sector');
    } catch (err) {
      throw new ErrTaskSetSector(err);
    }
  }
  /** The event number DeviceWaitevent waits to differ from. */
  setEventNr(eventNr: number): void {
    this.eventNr = eventNr;
  }
  setCookie(cookie: { value: number } | null | undefined, flags: number): void {
    if (!cookie) throw new ErrNilCookie();
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff) throw new ErrTaskSetCookie();
    this.udevFlags = flags;
    cookie.value = 0;
  }
  setAddNode(addNode: AddNodeType): void {
    if (addNode !== AddNodeType.AddNodeOnResume && addNode !== AddNodeType.AddNodeOnCreate) throw new ErrInvalidAddNode();
    this.addNode = addNode;
  }
  setRo(): void {
    this.ro = true;
  }
  setGeometry(cylinders: number, heads: number, sectorsPerTrack: number, start: number): void {
    this.geometry = { cylinders, heads, sectors: sectorsPerTrack, start };
  }
  addTarget(start: bigint | number, size: bigint | number, ttype: string, params: string): void {
    try {
      this.targets.push(parseTarget(ttype, sectors(start, 'start sector'), sectors(size, 'length'), params));
    } catch (err) {
      throw new ErrTaskAddTarget(err);
    }
  }

  async run(): Promise<void> {
    try {
      await this.perform();
      this.ran = true;
    } catch (err) {
      if (err instanceof DmError && err.code === 'EBUSY') throw new ErrBusy(err);
      throw new ErrTaskRun(err);
    }
  }

  private ref(): { name: DeviceName } {
    if (this.name === undefined) throw new ErrTaskSetName(new Error('the task has no device name'));
    return { name: this.name };
  }

  private async perform(): Promise<void> {
    const dm = this.dm;
    const T = TaskType;
    switch (this.type) {
      case T.DeviceCreate: {
        const ref = this.ref() as { name: DeviceName };
        const table = this.targets.length > 0 ? this.targets : undefined;
        this.info = await dm.create(ref.name, {
          readOnly: this.ro,
          udevFlags: this.udevFlags,
          ...(this.uuid !== undefined ? { uuid: this.uuid } : {}),
          ...(table ? { table } : {}),
        });
        if (this.addNode === AddNodeType.AddNodeOnCreate && !table) dm.mknodes(ref.name);
        return;
      }
      case T.DeviceReload:
        this.info = dm.loadTable(this.ref(), this.targets, { readOnly: this.ro });
        return;
      case T.DeviceRemove:
        await dm.remove(this.ref(), { udevFlags: this.udevFlags });
        return;
      case T.DeviceRemoveAll:
        dm.removeAll();
        return;
      case T.DeviceSuspend:
        this.info = await dm.suspend(this.ref());
        return;
      case T.DeviceResume:
        this.info = await dm.resume(this.ref(), { udevFlags: this.udevFlags });
        return;
      case T.DeviceInfo:
        this.info = dm.info(this.ref());
        return;
      case T.DeviceDeps:
        this.result = dm.deps(this.ref());
        return;
      case T.DeviceRename:
        if (this.newName === undefined) throw new ErrTaskSetName(new Error('DeviceRename needs setNewName()'));
        this.info = await dm.rename(this.ref(), this.newName, { udevFlags: this.udevFlags });
        return;
      case T.DeviceVersion:
        this.result = dm.version();
        return;
      case T.DeviceStatus:
        this.rows = dm.status(this.ref()).map((s) => [s.startSector, s.lengthSectors, s.type, s.params]);
        return;
      case T.DeviceTable:
        this.rows = dm.table(this.ref()).map((t) => [t.startSector, t.lengthSectors, t.type, formatTargetParams(t)]);
        return;
      case T.DeviceWaitevent:
        this.info = await dm.waitEvent(this.ref(), this.eventNr);
        return;
      case T.DeviceList:
        this.result = dm.list();
        return;
      case T.DeviceClear:
        this.info = dm.clearTable(this.ref());
        return;
      case T.DeviceMknodes:
        dm.mknodes(this.name);
        return;
      case T.DeviceListVersions:
        this.result = dm.listVersions();
        return;
      case T.DeviceTargetMsg:
        if (this.message === undefined) throw new ErrTaskSetMessage();
        this.messageResponse = dm.message(this.ref(), this.sector, this.message);
        return;
      case T.DeviceSetGeometry:
        if (!this.geometry) throw new Error('DeviceSetGeometry needs setGeometry()');
        dm.setGeometry(this.ref(), this.geometry);
        return;
    }
  }

  /** The device's state after run(); `exists: 0` when DeviceInfo found none. */
  getInfo(): Info {
    if (!this.ran || this.info === undefined) throw new ErrTaskGetInfo(new Error('no device information: run() a device task first'));
    const i = this.info;
    if (i === null) {
      return {
        exists: 0,
        suspended: 0,
        liveTable: 0,
        inactiveTable: 0,
        openCount: 0,
        eventNr: 0,
        major: 0,
        minor: 0,
        readOnly: 0,
        targetCount: 0,
      };
    }
    const b = (v: boolean): number => (v ? 1 : 0);
    return {
      exists: 1,
      suspended: b(i.suspended),
      liveTable: b(i.liveTable),
      inactiveTable: b(i.inactiveTable),
      openCount: i.openCount,
      eventNr: i.eventNr,
      major: i.dev.major,
      minor: i.dev.minor,
      readOnly: b(i.readOnly),
      targetCount: i.targetCount,
    };
  }

  /**
   * Iterates a DeviceTable/DeviceStatus result as the Go API does: start with next = 0; each call
   * returns the following cursor, 0 with the last target (and 0 with empty values when there is none).
   */
  getNextTarget(next: number): [nextPtr: number, start: bigint, length: bigint, targetType: string, params: string] {
    const row = this.rows[next];
    if (!row) return [0, 0n, 0n, '', ''];
    return [next + 1 < this.rows.length ? next + 1 : 0, ...row];
  }

  /** "4.47.0": the driver's version. */
  getDriverVersion(): string {
    try {
      const v = this.type === TaskType.DeviceVersion && Array.isArray(this.result) ? (this.result as number[]) : this.dm.driverVersion;
      return v.join('.');
    } catch (err) {
      throw new ErrTaskGetDriverVersion(err);
    }
  }

  /** What a DeviceTargetMsg's target answered ('' for none). */
  getMessageResponse(): string {
    return this.messageResponse;
  }
  /** The raw result of DeviceList, DeviceDeps, DeviceListVersions, DeviceVersion. */
  getResult(): unknown {
    return this.result;
  }
}
