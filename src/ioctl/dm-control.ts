// /dev/mapper/control: opening it (creating the node when missing), the driver version check, and
// running one DM command with the kernel's buffer protocol (grow and retry on DM_BUFFER_FULL_FLAG).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeDev, formatDev, type DevT } from '../structs/dev.js';
import { DM_COMMANDS, DM_COMMAND_LIST, type DmCommand, type DmCommandName } from '../structs/commands.js';
import {
  DM_IOCTL_SIZE,
  DM_VERSION_MAJOR,
  DmFlag,
  decodeDmIoctl,
  dmFlagNames,
  writeDmIoctl,
  type DmIoctl,
  type DmPayloadArena,
} from '../structs/dm-ioctl.js';
import { DmError, NoDeviceMapperError } from './errors.js';
import { Errno } from './errno.js';
import { O_CLOEXEC, O_RDWR, libcTransport, sysClose, sysMknod, sysOpen } from './libc.js';
import { ioctlResultText, log } from './log.js';
import { ensureNode, type NodeSys } from './nodes.js';
import type { IoctlResult, Transport } from './transport.js';

export const DM_CONTROL_PATH = '/dev/mapper/control';
/** include/uapi/linux/major.h MISC_MAJOR: /proc/misc lists only minors. */
const MISC_MAJOR = 10;
/** The size libdevmapper starts with; replies that do not fit come back with DM_BUFFER_FULL_FLAG. */
export const DM_INITIAL_BUFFER_SIZE = 16 * 1024;
/** A reply that needs more than this is not a reply we can use; stop doubling. */
export const DM_MAX_BUFFER_SIZE = 256 * 1024 * 1024;

export interface DmRunRequest {
  name?: string;
  uuid?: string;
  /** huge_encode_dev()'d device number (src/structs/dev.ts encodeDev). */
  dev?: bigint;
  flags?: number;
  event_nr?: number;
  target_count?: number;
  payload?: Uint8Array;
  /** How to name the device in errors when name and uuid are empty (e.g. a load addressed by dev). */
  label?: string;
}

export interface DmReply {
  header: DmIoctl;
  /** The kernel's output, data_start..data_size; empty when the command wrote none. */
  payload: Uint8Array;
}

/** The system calls DmControl makes besides ioctl; injectable so unit tests need no root or kernel. */
export interface DmControlSys extends NodeSys {
  open(path: string, flags: number): number;
  close(fd: number): void;
}

export interface DmControlOptions {
  transport?: Transport;
  controlPath?: string;
  /** Where the kernel registers misc devices in sysfs (default /sys/class/misc). */
  miscClassDir?: string;
  /** The kernel's list of misc minors (default /proc/misc). */
  procMiscPath?: string;
  sys?: Partial<DmControlSys>;
  /** The largest buffer to try before giving up with ENOBUFS (default DM_MAX_BUFFER_SIZE). */
  maxBufferSize?: number;
}

/** The driver's answer to DM_VERSION had another major than the interface we speak. */
export class DmVersionError extends Error {
  override name = 'DmVersionError';
  readonly code = 'EINVAL';
  constructor(readonly driverVersion: readonly [number, number, number]) {
    super(`device-mapper driver speaks interface ${driverVersion.join('.')}; this library speaks ${DM_VERSION_MAJOR}.x`);
  }
}

/** What run() needs of a command (number, request, version, returnsData): its record in DM_COMMANDS. */
type CommandInfo = DmCommand;

const EMPTY = new Uint8Array(0);

/** One command's reused buffer: `view` and `arg` cover the bytes of the current call. */
interface CommandSlot {
  buf: Buffer;
  view: Buffer;
  arg: Uint8Array;
  /** How far the last run wrote into `buf`, to zero it again. */
  dirty: number;
}

/** The device-mapper number of the misc device, from sysfs (`10:236`) or /proc/misc (` 236 device-mapper`). */
export function findDmMiscDev(miscClassDir: string, procMiscPath: string): DevT | undefined {
  try {
    const m = /^(\d+):(\d+)\s*$/.exec(readFileSync(join(miscClassDir, 'device-mapper', 'dev'), 'utf8'));
    if (m) return { major: Number(m[1]), minor: Number(m[2]) };
  } catch {
    // No sysfs entry: try /proc/misc.
  }
  try {
    const m = /^\s*(\d+)\s+device-mapper\s*$/m.exec(readFileSync(procMiscPath, 'utf8'));
    if (m) return { major: MISC_MAJOR, minor: Number(m[1]) };
  } catch {
    // No /proc either.
  }
  return undefined;
}

export class DmControl implements DmPayloadArena {
  /** The driver's version as DM_VERSION answered when the control node was opened. */
  readonly driverVersion: readonly [number, number, number];
  /** Per command number: the buffer size that last held the whole reply. */
  private readonly bufferSize: number[] = DM_COMMAND_LIST.map(() => DM_INITIAL_BUFFER_SIZE);
  /**
   * Per command number: the buffer that synchronous runs reuse, with views of the size last used,
   * so that the hot path allocates nothing. A reply's payload therefore stays valid only until the
   * next run of the same command; every caller in src/dm decodes it at once.
   */
  private readonly slots: (CommandSlot | undefined)[] = [];
  /** What scratch() lends: payloads are encoded here, then copied into the command's buffer. */
  private scratchBuf = Buffer.alloc(256);
  /** The header decoded last: its version and dev are reused while replies carry the same. */
  private lastHeader: DmIoctl | undefined;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly transport: Transport,
    readonly controlPath: string,
    private readonly closeFd: (fd: number) => void,
    private readonly maxBufferSize: number,
  ) {
    this.driverVersion = [0, 0, 0];
    const reply = this.run('DM_VERSION', {});
    const v = reply.header.version;
    this.driverVersion = [v[0], v[1], v[2]];
    if (v[0] !== DM_VERSION_MAJOR) throw new DmVersionError(this.driverVersion);
  }

  /**
   * Opens the control node O_RDWR|O_CLOEXEC, first making it from the kernel's registration of the
   * misc device when it is missing or stale, and checks the driver version.
   */
  static open(opts: DmControlOptions = {}): DmControl {
    const controlPath = opts.controlPath ?? DM_CONTROL_PATH;
    const miscClassDir = opts.miscClassDir ?? '/sys/class/misc';
    const procMiscPath = opts.procMiscPath ?? '/proc/misc';
    const sys: DmControlSys = {
      open: opts.sys?.open ?? ((path, flags) => sysOpen(path, flags)),
      close: opts.sys?.close ?? sysClose,
      mknod: opts.sys?.mknod ?? sysMknod,
    };
    const dev = findDmMiscDev(miscClassDir, procMiscPath);
    if (dev) ensureNode(controlPath, { type: 'char', ...dev, mode: 0o600 }, sys);
    else if (!existsSync(controlPath)) throw new NoDeviceMapperError(controlPath, miscClassDir, procMiscPath);
    const fd = sys.open(controlPath, O_RDWR | O_CLOEXEC);
    try {
      return new DmControl(fd, opts.transport ?? libcTransport, controlPath, sys.close, opts.maxBufferSize ?? DM_MAX_BUFFER_SIZE);
    } catch (err) {
      sys.close(fd);
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeFd(this.fd);
  }

  /**
   * A zeroed buffer of `size` bytes for the payload of the next run (see DmPayloadArena): valid until
   * the next call, and run()/runAsync() copy the payload before anything else can ask for one.
   */
  scratch(size: number): Buffer {
    if (this.scratchBuf.length < size) this.scratchBuf = Buffer.alloc(Math.max(size, this.scratchBuf.length * 2));
    else this.scratchBuf.fill(0, 0, size);
    return this.scratchBuf.subarray(0, size);
  }

  /** Runs a command synchronously: for everything that returns promptly. */
  run(command: DmCommandName, req: DmRunRequest): DmReply {
    const info: CommandInfo = DM_COMMANDS[command];
    let size = this.startSize(info, req);
    for (;;) {
      const slot = this.slot(info.nr, size);
      const buf = slot.buf;
      // The kernel sees a request exactly as a fresh zeroed buffer would give it: no stale reply.
      const used = DM_IOCTL_SIZE + (req.payload?.length ?? 0);
      if (slot.dirty > used) buf.fill(0, used, slot.dirty);
      this.encode(info, req, size, slot.view);
      // What the kernel may write back: the whole buffer when it reports it full, else data_size.
      slot.dirty = size;
      const reply = this.finish(info, req, slot.view, this.transport.ioctl(this.fd, info.request, slot.arg));
      if (reply) {
        slot.dirty = Math.max(used, Math.min(size, reply.header.data_size));
        return reply;
      }
      size = this.grow(info, req, size);
    }
  }

  /** Command `nr`'s reused buffer, with views of exactly `size` bytes. */
  private slot(nr: number, size: number): CommandSlot {
    let slot = this.slots[nr];
    if (slot === undefined || slot.buf.length < size) {
      const buf = Buffer.alloc(size);
      // A plain Uint8Array over the same memory: koffi passes it with less work than a Buffer
      // (measured in the guest: ~6 us a call).
      slot = this.slots[nr] = { buf, view: buf, arg: new Uint8Array(buf.buffer, buf.byteOffset, size), dirty: 0 };
    } else if (slot.view.length !== size) {
      slot.view = slot.buf.subarray(0, size);
      slot.arg = new Uint8Array(slot.buf.buffer, slot.buf.byteOffset, size);
    }
    return slot;
  }

  /**
   * The same on a worker thread: for DM_DEV_WAIT, suspends that flush, and removes that may wait,
   * so that the event loop keeps running meanwhile.
   */
  async runAsync(command: DmCommandName, req: DmRunRequest): Promise<DmReply> {
    const info: CommandInfo = DM_COMMANDS[command];
    let size = this.startSize(info, req);
    for (;;) {
      // A fresh buffer per call: two asynchronous calls may be in flight at once.
      const buf = this.encode(info, req, size, Buffer.alloc(size));
      const reply = this.finish(info, req, buf, await this.transport.ioctlAsync(this.fd, info.request, buf));
      if (reply) return reply;
      size = this.grow(info, req, size);
    }
  }

  // Commands that write no payload get a buffer of exactly header + input: the kernel copies in
  // (and allocates) all of data_size, so libdevmapper's 16 KiB everywhere would cost a hot path.
  private startSize(info: CommandInfo, req: DmRunRequest): number {
    const used = DM_IOCTL_SIZE + (req.payload?.length ?? 0);
    if (this.closed) throw new DmError(info.name, Errno.EBADF, deviceLabel(req), this.controlPath);
    return info.returnsData ? Math.max(used, this.bufferSize[info.nr] as number) : used;
  }

  private encode(info: CommandInfo, req: DmRunRequest, size: number, into: Buffer): Buffer {
    // The request object is read as it is: no copy per call on the hot path.
    return writeDmIoctl(into, info.version, req, req.payload, size);
  }

  /** The reply, or undefined when it did not fit and the caller must retry with a larger buffer. */
  private finish(info: CommandInfo, req: DmRunRequest, buf: Buffer, result: IoctlResult): DmReply | undefined {
    if (result.ret === -1) {
      if (log.enabled('trace')) traceCommand(info, req, result, undefined);
      throw new DmError(info.name, result.errno, deviceLabel(req), this.controlPath);
    }
    // The kernel answers with the name the request carried: that string is reused when it matches.
    const header = decodeDmIoctl(buf, req.name || req.label, this.lastHeader);
    this.lastHeader = header;
    if (log.enabled('trace')) traceCommand(info, req, result, header);
    if (info.returnsData) {
      if (header.flags & DmFlag.DM_BUFFER_FULL_FLAG) return undefined;
      // Remember what the reply needed plus 1/16 for growth, not the power of two that held it: the
      // kernel allocates and copies in all of data_size on every call (bench P2: a 1 MiB buffer for
      // a 0.56 MB list of 10,000 devices cost 2.3x the exact size). It never shrinks: one command
      // serves replies of different sizes (TABLE_STATUS gives both a table and its shorter status).
      const needed = header.data_size;
      const tight = Math.min(buf.length, (needed + (needed >> 4) + 7) & ~7);
      if (tight > (this.bufferSize[info.nr] as number)) this.bufferSize[info.nr] = tight;
    }
    const payload = header.data_size > header.data_start ? buf.subarray(header.data_start, header.data_size) : EMPTY;
    return { header, payload };
  }

  // Doubling, as libdevmapper does. A DM_TARGET_MSG retry runs the message again: only messages that
  // answer (dm-stats, @-messages) can overflow, and those are queries.
  private grow(info: CommandInfo, req: DmRunRequest, size: number): number {
    const next = size * 2;
    if (next > this.maxBufferSize) throw new DmError(info.name, Errno.ENOBUFS, deviceLabel(req), this.controlPath);
    return next;
  }
}

/**
 * One DM ioctl at trace level, as libdevmapper's debug log has it: the command, the device as
 * addressed, the flags sent, and the result; on success the flags and device number the kernel
 * answered (DM_DEV_CREATE's new device, DM_BUFFER_FULL_FLAG before a retry with a larger buffer).
 */
function traceCommand(info: CommandInfo, req: DmRunRequest, result: IoctlResult, reply: DmIoctl | undefined): void {
  log.trace(`ioctl ${info.name}`, {
    name: req.name || undefined,
    uuid: req.uuid || undefined,
    dev: req.dev ? formatDev(decodeDev(req.dev)) : undefined,
    flags: flagText(req.flags ?? 0),
    event_nr: req.event_nr || undefined,
    result: ioctlResultText(result),
    reply_dev: reply?.dev ? formatDev(decodeDev(reply.dev)) : undefined,
    reply_flags: reply ? flagText(reply.flags) : undefined,
    data_size: reply && info.returnsData ? reply.data_size : undefined,
  });
}

function flagText(flags: number): string {
  return flags === 0 ? '0' : dmFlagNames(flags).join('|');
}

/**
 * The device as the request addressed it, for error messages: name, else uuid, else the caller's
 * label with the device number beside it (as libdevmapper prints `bad1 (254:1)`), else the number.
 */
function deviceLabel(req: DmRunRequest): string | undefined {
  if (req.name) return req.name;
  if (req.uuid) return req.uuid;
  const dev = req.dev ? formatDev(decodeDev(req.dev)) : undefined;
  if (req.label) return dev ? `${req.label} (${dev})` : req.label;
  return dev;
}
