// struct dm_ioctl (include/uapi/linux/dm-ioctl.h): the 312-byte header of every DM command.
import { _IOWR } from './ioc.js';
import { DecodeError, EncodeError } from './errors.js';
import { readCString, writeCString } from './cstring.js';

export const DM_IOCTL = 0xfd;
export const DM_NAME_LEN = 128;
export const DM_UUID_LEN = 129;
export const DM_MAX_TYPE_NAME = 16;
export const DM_DIR = 'mapper';
export const DM_CONTROL_NODE = 'control';

/** sizeof(struct dm_ioctl): 305 bytes of fields, 7 of `data`, no tail padding. */
export const DM_IOCTL_SIZE = 312;

// Field offsets, in the header's order.
const OFF_VERSION = 0;
const OFF_DATA_SIZE = 12;
const OFF_DATA_START = 16;
const OFF_TARGET_COUNT = 20;
const OFF_OPEN_COUNT = 24;
const OFF_FLAGS = 28;
const OFF_EVENT_NR = 32; // then u32 padding@36
const OFF_DEV = 40;
const OFF_NAME = 48;
const OFF_UUID = OFF_NAME + DM_NAME_LEN; // 176
// char data[7]@305 pads the header to 312; the payload starts at data_start.

/** The kernel's command numbers (enum DM_*_CMD). */
export const DmCmd = {
  DM_VERSION: 0,
  DM_REMOVE_ALL: 1,
  DM_LIST_DEVICES: 2,
  DM_DEV_CREATE: 3,
  DM_DEV_REMOVE: 4,
  DM_DEV_RENAME: 5,
  DM_DEV_SUSPEND: 6,
  DM_DEV_STATUS: 7,
  DM_DEV_WAIT: 8,
  DM_TABLE_LOAD: 9,
  DM_TABLE_CLEAR: 10,
  DM_TABLE_DEPS: 11,
  DM_TABLE_STATUS: 12,
  DM_LIST_VERSIONS: 13,
  DM_TARGET_MSG: 14,
  DM_DEV_SET_GEOMETRY: 15,
  DM_DEV_ARM_POLL: 16,
  DM_GET_TARGET_VERSION: 17,
} as const;
export type DmCommandName = keyof typeof DmCmd;
export type DmCommandNr = (typeof DmCmd)[DmCommandName];

const commandNames = new Map<number, DmCommandName>(
  (Object.entries(DmCmd) as [DmCommandName, number][]).map(([name, nr]) => [nr, name]),
);

/** The command's name from its number, or undefined for a number the kernel does not define. */
export function dmCommandName(nr: number): DmCommandName | undefined {
  return commandNames.get(nr);
}

/** `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`: the request number passed to ioctl(2). */
export function dmRequest(nr: DmCommandNr): number {
  return _IOWR(DM_IOCTL, nr, DM_IOCTL_SIZE);
}

/** The interface version this library speaks (the header's DM_VERSION_*). */
export const DM_VERSION_MAJOR = 4;

/**
 * The lowest interface version at which each command exists; sent in `version` like libdevmapper
 * does, so that an older kernel refuses a command it does not know with EINVAL instead of guessing.
 */
export const DM_COMMAND_MIN_VERSION: Record<DmCommandName, readonly [number, number, number]> = {
  DM_VERSION: [4, 0, 0],
  DM_REMOVE_ALL: [4, 0, 0],
  DM_LIST_DEVICES: [4, 0, 0],
  DM_DEV_CREATE: [4, 0, 0],
  DM_DEV_REMOVE: [4, 0, 0],
  DM_DEV_RENAME: [4, 0, 0],
  DM_DEV_SUSPEND: [4, 0, 0],
  DM_DEV_STATUS: [4, 0, 0],
  DM_DEV_WAIT: [4, 0, 0],
  DM_TABLE_LOAD: [4, 0, 0],
  DM_TABLE_CLEAR: [4, 0, 0],
  DM_TABLE_DEPS: [4, 0, 0],
  DM_TABLE_STATUS: [4, 0, 0],
  DM_LIST_VERSIONS: [4, 1, 0],
  DM_TARGET_MSG: [4, 2, 0],
  DM_DEV_SET_GEOMETRY: [4, 6, 0],
  DM_DEV_ARM_POLL: [4, 36, 0],
  DM_GET_TARGET_VERSION: [4, 41, 0],
};

/** Status bits of dm_ioctl.flags, by the kernel's names. */
export const DmFlag = {
  DM_READONLY_FLAG: 1 << 0,
  DM_SUSPEND_FLAG: 1 << 1,
  /** libdevmapper's private bit (1 << 2), never read by the kernel; listed so decoders can name it. */
  DM_EXISTS_FLAG: 1 << 2,
  DM_PERSISTENT_DEV_FLAG: 1 << 3,
  DM_STATUS_TABLE_FLAG: 1 << 4,
  DM_ACTIVE_PRESENT_FLAG: 1 << 5,
  DM_INACTIVE_PRESENT_FLAG: 1 << 6,
  DM_BUFFER_FULL_FLAG: 1 << 8,
  DM_SKIP_BDGET_FLAG: 1 << 9,
  DM_SKIP_LOCKFS_FLAG: 1 << 10,
  DM_NOFLUSH_FLAG: 1 << 11,
  DM_QUERY_INACTIVE_TABLE_FLAG: 1 << 12,
  DM_UEVENT_GENERATED_FLAG: 1 << 13,
  DM_UUID_FLAG: 1 << 14,
  DM_SECURE_DATA_FLAG: 1 << 15,
  DM_DATA_OUT_FLAG: 1 << 16,
  DM_DEFERRED_REMOVE: 1 << 17,
  DM_INTERNAL_SUSPEND_FLAG: 1 << 18,
  DM_IMA_MEASUREMENT_FLAG: 1 << 19,
} as const;
export type DmFlagName = keyof typeof DmFlag;

/** Names of the bits set in `flags`, lowest first; unknown bits as `0x...`. */
export function dmFlagNames(flags: number): string[] {
  const names: string[] = [];
  let rest = flags >>> 0;
  for (const [name, bit] of Object.entries(DmFlag)) {
    if (rest & bit) {
      names.push(name);
      rest = (rest & ~bit) >>> 0;
    }
  }
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names;
}

/**
 * udev flags carried in the high 16 bits of event_nr on resume, remove and rename
 * (libdevmapper's DM_UDEV_* in libdm/libdevmapper.h, read by 10-dm.rules); the low 16 bits are
 * the udev cookie. Not kernel ABI: the kernel copies the whole value into the uevent's DM_COOKIE.
 */
export const DM_UDEV_FLAGS_SHIFT = 16;
export const DmUdevFlag = {
  DM_UDEV_DISABLE_DM_RULES_FLAG: 0x0001,
  DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG: 0x0002,
  DM_UDEV_DISABLE_DISK_RULES_FLAG: 0x0004,
  DM_UDEV_DISABLE_OTHER_RULES_FLAG: 0x0008,
  DM_UDEV_LOW_PRIORITY_FLAG: 0x0010,
  DM_UDEV_DISABLE_LIBRARY_FALLBACK: 0x0020,
  DM_UDEV_PRIMARY_SOURCE_FLAG: 0x0040,
} as const;

/** The header as decoded from a buffer. `dev` is huge_encode_dev()'d; see dev.ts. */
export interface DmIoctl {
  version: [number, number, number];
  data_size: number;
  data_start: number;
  target_count: number;
  open_count: number;
  flags: number;
  event_nr: number;
  dev: bigint;
  name: string;
  uuid: string;
}

/** What a caller sets on a request; everything else is zero. */
export interface DmIoctlRequest {
  version: readonly [number, number, number];
  flags?: number;
  event_nr?: number;
  dev?: bigint;
  name?: string;
  uuid?: string;
  target_count?: number;
}

/**
 * Encodes a request: the header followed by `payload` at data_start (312, already 8-aligned),
 * in a zeroed buffer of `data_size` bytes (at least header + payload) that the kernel may fill.
 */
export function encodeDmIoctl(req: DmIoctlRequest, payload: Uint8Array | undefined, dataSize: number): Buffer {
  const size = Math.max(dataSize, DM_IOCTL_SIZE + (payload?.length ?? 0));
  return encodeDmIoctlInto(Buffer.alloc(size), req, payload, size);
}

/** The request fields besides the version, as callers that keep the version apart hold them. */
export type DmIoctlFields = Omit<DmIoctlRequest, 'version'>;

/**
 * The same into a buffer the caller reuses (the hot path of DmControl): the header is rewritten in
 * full and the payload copied after it; bytes past the payload are left as they are, since the
 * kernel reads only what the header and payload describe. `buf` must hold `dataSize` bytes.
 */
export function encodeDmIoctlInto(
  buf: Buffer,
  req: DmIoctlRequest,
  payload: Uint8Array | undefined,
  dataSize: number,
): Buffer {
  return writeDmIoctl(buf, req.version, req, payload, dataSize);
}

/** encodeDmIoctlInto with the version apart, so a caller's request object is used as it is. */
export function writeDmIoctl(
  buf: Buffer,
  version: readonly [number, number, number],
  req: DmIoctlFields,
  payload: Uint8Array | undefined,
  dataSize: number,
): Buffer {
  const size = Math.max(dataSize, DM_IOCTL_SIZE + (payload?.length ?? 0));
  if (buf.length < size) throw new EncodeError('dm_ioctl', 'data_size', `${size} bytes do not fit a ${buf.length}-byte buffer`);
  buf.fill(0, 0, DM_IOCTL_SIZE);
  buf.writeUInt32LE(version[0], OFF_VERSION);
  buf.writeUInt32LE(version[1], OFF_VERSION + 4);
  buf.writeUInt32LE(version[2], OFF_VERSION + 8);
  buf.writeUInt32LE(size, OFF_DATA_SIZE);
  buf.writeUInt32LE(DM_IOCTL_SIZE, OFF_DATA_START);
  buf.writeUInt32LE(req.target_count ?? 0, OFF_TARGET_COUNT);
  buf.writeUInt32LE((req.flags ?? 0) >>> 0, OFF_FLAGS);
  buf.writeUInt32LE((req.event_nr ?? 0) >>> 0, OFF_EVENT_NR);
  if (req.dev) buf.writeBigUInt64LE(req.dev, OFF_DEV);
  if (req.name) writeCString(buf, OFF_NAME, 'dm_ioctl', 'name', req.name, DM_NAME_LEN);
  if (req.uuid) writeCString(buf, OFF_UUID, 'dm_ioctl', 'uuid', req.uuid, DM_UUID_LEN);
  if (payload) buf.set(payload, DM_IOCTL_SIZE);
  return buf;
}

/** Decodes the header of a buffer the kernel returned. Checks data_start/data_size against it. */
export function decodeDmIoctl(buf: Uint8Array): DmIoctl {
  if (buf.length < DM_IOCTL_SIZE) {
    throw new DecodeError('dm_ioctl', 0, `buffer of ${buf.length} bytes is shorter than ${DM_IOCTL_SIZE}`);
  }
  // Buffer's own readers: several times cheaper than a DataView per call on this hot path.
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const header: DmIoctl = {
    version: [b.readUInt32LE(OFF_VERSION), b.readUInt32LE(OFF_VERSION + 4), b.readUInt32LE(OFF_VERSION + 8)],
    data_size: b.readUInt32LE(OFF_DATA_SIZE),
    data_start: b.readUInt32LE(OFF_DATA_START),
    target_count: b.readUInt32LE(OFF_TARGET_COUNT),
    open_count: b.readInt32LE(OFF_OPEN_COUNT),
    flags: b.readUInt32LE(OFF_FLAGS),
    event_nr: b.readUInt32LE(OFF_EVENT_NR),
    dev: b.readBigUInt64LE(OFF_DEV),
    name: readCString(b, OFF_NAME, OFF_NAME + DM_NAME_LEN, 'dm_ioctl', 'name'),
    uuid: readCString(b, OFF_UUID, OFF_UUID + DM_UUID_LEN, 'dm_ioctl', 'uuid'),
  };
  if (header.data_size > buf.length) {
    throw new DecodeError('dm_ioctl', OFF_DATA_SIZE, `data_size ${header.data_size} exceeds the ${buf.length}-byte buffer`);
  }
  // A reply to a command that returns no data has data_size = offsetof(struct dm_ioctl, data) = 305
  // (ctl_ioctl sets it before the command runs), which is below data_start: an empty payload.
  if (header.data_start < DM_IOCTL_SIZE || header.data_start > buf.length) {
    throw new DecodeError(
      'dm_ioctl',
      OFF_DATA_START,
      `data_start ${header.data_start} outside ${DM_IOCTL_SIZE}..${buf.length} (the buffer)`,
    );
  }
  return header;
}

/** offsetof(struct dm_ioctl, data): the data_size the kernel reports when a command returns no data. */
export const DM_IOCTL_DATA_OFFSET = 305;

/**
 * The payload the kernel wrote: bytes data_start..data_size of a decoded reply. Meaningful only
 * when the command returns data and DM_BUFFER_FULL_FLAG is clear.
 */
export function dmPayload(buf: Uint8Array, header: DmIoctl): Uint8Array {
  return buf.subarray(header.data_start, Math.max(header.data_start, header.data_size));
}
