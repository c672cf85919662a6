// Typed errors of the system-call layer: every failure carries the errno's name as `code`, like
// Node's own fs errors, so callers test `err.code === 'EBUSY'` rather than parse messages.
import type { DmCommandName } from '../structs/dm-ioctl.js';
import { errnoMessage, errnoName } from './errno.js';

/** A system call that returned -1. */
export class SysError extends Error {
  override name = 'SysError';
  /** The errno's name, e.g. 'EBUSY'. */
  readonly code: string;
  readonly errno: number;
  /** The call that failed: 'open', 'ioctl', 'LOOP_CONFIGURE', 'mount'... */
  readonly syscall: string;
  readonly path?: string;

  constructor(syscall: string, errno: number, path?: string, what?: string) {
    const code = errnoName(errno);
    super(`${what ?? (path === undefined ? syscall : `${syscall} ${path}`)}: ${code} (${errnoMessage(errno)})`);
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    if (path !== undefined) this.path = path;
  }
}

/** A device-mapper command the kernel refused: `DM_DEV_REMOVE lin0: EBUSY (Device or resource busy)`. */
export class DmError extends SysError {
  override name = 'DmError';
  readonly command: DmCommandName;
  /** The device as addressed: name, else uuid, else major:minor, else the caller's label. */
  readonly device?: string;

  constructor(command: DmCommandName, errno: number, device?: string, controlPath?: string) {
    super(command, errno, controlPath, device ? `${command} ${device}` : command);
    this.command = command;
    if (device !== undefined) this.device = device;
  }
}

/** Neither the control node nor the kernel's registration of the misc device exists. */
export class NoDeviceMapperError extends Error {
  override name = 'NoDeviceMapperError';
  readonly code = 'ENODEV';
  constructor(
    readonly controlPath: string,
    /** The folder of misc devices in sysfs, normally /sys/class/misc. */
    readonly miscClassDir: string,
    readonly procMiscPath: string,
  ) {
    super(
      `this kernel has no device-mapper: no ${controlPath}, no device-mapper in ${miscClassDir} or ${procMiscPath}` +
        " (load the dm-mod module, or run inside the project's guest kernel)",
    );
  }
}
