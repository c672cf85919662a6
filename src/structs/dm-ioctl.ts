// struct dm_ioctl (include/uapi/linux/dm-ioctl.h): the 312-byte header of every DM command.
import { DecodeError, EncodeError } from './errors.js';
import { readCString, writeCString } from './cstring.js';
import { DM_IOCTL_OFFSETS, DM_IOCTL_SIZE, DM_NAME_LEN, DM_UUID_LEN, DmFlag, type DmVersion } from './dm-abi.js';

// The header's constants and the command table, where callers have always found them.
export {
  DM_CONTROL_NODE,
  DM_DIR,
  DM_IOCTL,
  DM_IOCTL_DATA_OFFSET,
  DM_IOCTL_OFFSETS,
  DM_IOCTL_SIZE,
  DM_MAX_TYPE_NAME,
  DM_NAME_LEN,
  DM_UDEV_FLAGS_SHIFT,
  DM_UUID_LEN,
  DM_VERSION_MAJOR,
  DmFlag,
  DmUdevFlag,
  type DmFlagName,
  type DmVersion,
} from './dm-abi.js';
export {
  DM_COMMAND_MIN_VERSION,
  DmCmd,
  dmCommandName,
  dmRequest,
  type DmCommandName,
  type DmCommandNr,
} from './commands.js';

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
 * Lends a zeroed buffer for a request's payload, valid until it lends the next one: DmControl's,
 * which copies the payload into its command buffer before anything else can ask. Payload encoders
 * take one so that the hot path allocates nothing per call.
 */
export interface DmPayloadArena {
  scratch(size: number): Buffer;
}

/** The header as decoded from a buffer. `dev` is huge_encode_dev()'d; see dev.ts. */
export interface DmIoctl {
  version: DmVersion;
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
  version: DmVersion;
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
export function encodeDmIoctlInto(buf: Buffer, req: DmIoctlRequest, payload: Uint8Array | undefined, dataSize: number): Buffer {
  return writeDmIoctl(buf, req.version, req, payload, dataSize);
}

/** encodeDmIoctlInto with the version apart, so a caller's request object is used as it is. */
export function writeDmIoctl(
  buf: Buffer,
  version: DmVersion,
  req: DmIoctlFields,
  payload: Uint8Array | undefined,
  dataSize: number,
): Buffer {
  const size = Math.max(dataSize, DM_IOCTL_SIZE + (payload?.length ?? 0));
  if (buf.length < size) throw new EncodeError('dm_ioctl', 'data_size', `${size} bytes do not fit a ${buf.length}-byte buffer`);
  buf.fill(0, 0, DM_IOCTL_SIZE);
  buf.writeUInt32LE(version[0], DM_IOCTL_OFFSETS.version);
  buf.writeUInt32LE(version[1], DM_IOCTL_OFFSETS.version + 4);
  buf.writeUInt32LE(version[2], DM_IOCTL_OFFSETS.version + 8);
  buf.writeUInt32LE(size, DM_IOCTL_OFFSETS.data_size);
  buf.writeUInt32LE(DM_IOCTL_SIZE, DM_IOCTL_OFFSETS.data_start);
  buf.writeUInt32LE(req.target_count ?? 0, DM_IOCTL_OFFSETS.target_count);
  buf.writeUInt32LE((req.flags ?? 0) >>> 0, DM_IOCTL_OFFSETS.flags);
  buf.writeUInt32LE((req.event_nr ?? 0) >>> 0, DM_IOCTL_OFFSETS.event_nr);
  if (req.dev) writeDev(buf, req.dev);
  if (req.name) writeCString(buf, DM_IOCTL_OFFSETS.name, 'dm_ioctl', 'name', req.name, DM_NAME_LEN);
  if (req.uuid) writeCString(buf, DM_IOCTL_OFFSETS.uuid, 'dm_ioctl', 'uuid', req.uuid, DM_UUID_LEN);
  if (payload) buf.set(payload, DM_IOCTL_SIZE);
  return buf;
}

/** dev at its offset; a huge_encode_dev() value (32 bits) without bigint arithmetic. */
function writeDev(buf: Buffer, dev: bigint): void {
  if (dev <= 0xffffffffn) {
    buf.writeUInt32LE(Number(dev), DM_IOCTL_OFFSETS.dev);
    buf.writeUInt32LE(0, DM_IOCTL_OFFSETS.dev + 4);
  } else buf.writeBigUInt64LE(dev, DM_IOCTL_OFFSETS.dev);
}

/** The version in `b`; `prev`'s own array when it is the same (every reply of a driver carries one). */
function readVersion(b: Buffer, prev: DmIoctl | undefined): DmVersion {
  const major = b.readUInt32LE(DM_IOCTL_OFFSETS.version);
  const minor = b.readUInt32LE(DM_IOCTL_OFFSETS.version + 4);
  const patch = b.readUInt32LE(DM_IOCTL_OFFSETS.version + 8);
  const v = prev?.version;
  return v !== undefined && v[0] === major && v[1] === minor && v[2] === patch ? v : Object.freeze([major, minor, patch] as const);
}

/** The dev in `b`; `prev`'s own value when the same (a device's commands all carry its dev). */
function readDev(b: Buffer, prev: DmIoctl | undefined): bigint {
  const low = b.readUInt32LE(DM_IOCTL_OFFSETS.dev);
  if (b.readUInt32LE(DM_IOCTL_OFFSETS.dev + 4) !== 0) return b.readBigUInt64LE(DM_IOCTL_OFFSETS.dev);
  return prev !== undefined && Number(prev.dev) === low ? prev.dev : BigInt(low);
}

/**
 * The string in `b` at `offset` when it is `s`, ASCII and NUL-terminated within `fieldSize`:
 * compared in place, so that the name a reply echoes costs no decode.
 */
function isAsciiCString(b: Uint8Array, offset: number, fieldSize: number, s: string): boolean {
  const n = s.length;
  if (n >= fieldSize || b[offset + n] !== 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80 || b[offset + i] !== c) return false;
  }
  return true;
}

/**
 * Decodes the header of a buffer the kernel returned. Checks data_start/data_size against it.
 * `nameHint`: the name the request carried, given back as the same string when the reply holds it;
 * `prev`: the header the caller decoded last, whose version and dev are given back when the same,
 * so that a hot loop of one device's commands allocates neither.
 */
export function decodeDmIoctl(buf: Uint8Array, nameHint?: string, prev?: DmIoctl): DmIoctl {
  if (buf.length < DM_IOCTL_SIZE) {
    throw new DecodeError('dm_ioctl', 0, `buffer of ${buf.length} bytes is shorter than ${DM_IOCTL_SIZE}`);
  }
  // Buffer's own readers: several times cheaper than a DataView per call on this hot path.
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const header: DmIoctl = {
    version: readVersion(b, prev),
    data_size: b.readUInt32LE(DM_IOCTL_OFFSETS.data_size),
    data_start: b.readUInt32LE(DM_IOCTL_OFFSETS.data_start),
    target_count: b.readUInt32LE(DM_IOCTL_OFFSETS.target_count),
    open_count: b.readInt32LE(DM_IOCTL_OFFSETS.open_count),
    flags: b.readUInt32LE(DM_IOCTL_OFFSETS.flags),
    event_nr: b.readUInt32LE(DM_IOCTL_OFFSETS.event_nr),
    dev: readDev(b, prev),
    name:
      nameHint !== undefined && isAsciiCString(b, DM_IOCTL_OFFSETS.name, DM_NAME_LEN, nameHint)
        ? nameHint
        : readCString(b, DM_IOCTL_OFFSETS.name, DM_IOCTL_OFFSETS.name + DM_NAME_LEN, 'dm_ioctl', 'name'),
    // Most devices have no uuid.
    uuid:
      b[DM_IOCTL_OFFSETS.uuid] === 0 ? '' : readCString(b, DM_IOCTL_OFFSETS.uuid, DM_IOCTL_OFFSETS.uuid + DM_UUID_LEN, 'dm_ioctl', 'uuid'),
  };
  if (header.data_size > buf.length) {
    const reason = `data_size ${header.data_size} exceeds the ${buf.length}-byte buffer`;
    throw new DecodeError('dm_ioctl', DM_IOCTL_OFFSETS.data_size, reason);
  }
  // A reply to a command that returns no data has data_size = offsetof(struct dm_ioctl, data) = 305
  // (ctl_ioctl sets it before the command runs), which is below data_start: an empty payload.
  if (header.data_start < DM_IOCTL_SIZE || header.data_start > buf.length) {
    throw new DecodeError(
      'dm_ioctl',
      DM_IOCTL_OFFSETS.data_start,
      `data_start ${header.data_start} outside ${DM_IOCTL_SIZE}..${buf.length} (the buffer)`,
    );
  }
  return header;
}

/**
 * The payload the kernel wrote: bytes data_start..data_size of a decoded reply. Meaningful only
 * when the command returns data and DM_BUFFER_FULL_FLAG is clear.
 */
export function dmPayload(buf: Uint8Array, header: DmIoctl): Uint8Array {
  return buf.subarray(header.data_start, Math.max(header.data_start, header.data_size));
}
