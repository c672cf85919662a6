// Validated names and numbers at the API's edge: the kernel's limits (DM_NAME_LEN, DM_UUID_LEN,
// dm-thin's 24-bit device ids) checked once, before anything is encoded.
import { DM_CONTROL_NODE, DM_NAME_LEN, DM_UUID_LEN } from '../structs/dm-ioctl.js';
import { formatDev, type DevT } from '../structs/dev.js';
import { InvalidArgumentError } from './errors.js';

declare const deviceNameBrand: unique symbol;
declare const deviceUuidBrand: unique symbol;
declare const thinIdBrand: unique symbol;
export type DeviceName = string & { readonly [deviceNameBrand]: true };
export type DeviceUuid = string & { readonly [deviceUuidBrand]: true };
/** A dm-thin device id: the pool's name for a thin device, 24 bits. */
export type ThinId = number & { readonly [thinIdBrand]: true };

/** How a command addresses a device: by name, by uuid, or by its major:minor. */
export type DeviceRef = { name: DeviceName } | { uuid: DeviceUuid } | { dev: DevT };

/** Largest dm-thin device id: the pool's metadata keeps 24 bits (thin-provisioning.rst). */
export const THIN_ID_MAX = 2 ** 24 - 1;

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether `s` is ill-formed UTF-16 (String.prototype.isWellFormed, not in Node 20's types). Its
 * UTF-8 encoding turns each lone surrogate into U+FFFD, so two such strings could name one device.
 */
export function hasLoneSurrogate(s: string): boolean {
  return LONE_SURROGATE.test(s);
}

/**
 * A device name as the kernel accepts it: 1..127 bytes of UTF-8 (DM_NAME_LEN with its NUL), no
 * '/' (it becomes /dev/mapper/<name>), not '.' or '..', no NUL, no lone surrogate. Not `control`
 * either: /dev/mapper/control is the control node itself, and libdevmapper reserves the name.
 */
export function deviceName(s: string): DeviceName {
  if (typeof s !== 'string') throw new InvalidArgumentError('device name', s, 'not a string');
  if (hasLoneSurrogate(s)) throw new InvalidArgumentError('device name', s, 'has a lone surrogate (not valid UTF-16)');
  const bytes = Buffer.byteLength(s, 'utf8');
  if (bytes === 0) throw new InvalidArgumentError('device name', s, 'is empty');
  if (bytes > DM_NAME_LEN - 1) {
    throw new InvalidArgumentError('device name', s, `is ${bytes} bytes, the kernel allows ${DM_NAME_LEN - 1}`);
  }
  if (s.includes('/')) throw new InvalidArgumentError('device name', s, "contains '/'");
  if (s.includes('\0')) throw new InvalidArgumentError('device name', s, 'contains a NUL byte');
  if (s === '.' || s === '..') throw new InvalidArgumentError('device name', s, "'.' and '..' are not names");
  if (s === DM_CONTROL_NODE) {
    throw new InvalidArgumentError('device name', s, `reserved: /dev/mapper/${DM_CONTROL_NODE} is the device-mapper control node`);
  }
  return s as DeviceName;
}

/** A device uuid: 1..128 bytes of UTF-8 (DM_UUID_LEN with its NUL), no NUL, no lone surrogate. */
export function deviceUuid(s: string): DeviceUuid {
  if (typeof s !== 'string') throw new InvalidArgumentError('device uuid', s, 'not a string');
  if (hasLoneSurrogate(s)) throw new InvalidArgumentError('device uuid', s, 'has a lone surrogate (not valid UTF-16)');
  const bytes = Buffer.byteLength(s, 'utf8');
  if (bytes === 0) throw new InvalidArgumentError('device uuid', s, 'is empty');
  if (bytes > DM_UUID_LEN - 1) {
    throw new InvalidArgumentError('device uuid', s, `is ${bytes} bytes, the kernel allows ${DM_UUID_LEN - 1}`);
  }
  if (s.includes('\0')) throw new InvalidArgumentError('device uuid', s, 'contains a NUL byte');
  return s as DeviceUuid;
}

/** A dm-thin device id: an integer 0..2^24-1. */
export function thinId(n: number): ThinId {
  if (!Number.isInteger(n) || n < 0 || n > THIN_ID_MAX) {
    throw new InvalidArgumentError('thin id', n, `must be an integer in 0..${THIN_ID_MAX} (24 bits)`);
  }
  return n as ThinId;
}

// Sector counts and u64s are the pure layer's (src/structs/units.ts).
export { sectors, u64 } from '../structs/units.js';

/**
 * Checks the name/uuid/dev inside a DeviceRef; returns it unchanged. Typed callers pass names made
 * by deviceName(); this guards the DeviceMapper methods against JavaScript callers, before any ioctl.
 */
export function checkDeviceRef(ref: DeviceRef): DeviceRef {
  if (ref === null || typeof ref !== 'object') throw new InvalidArgumentError('device', ref, 'not a device reference');
  if ('name' in ref) deviceName(ref.name);
  else if ('uuid' in ref) deviceUuid(ref.uuid);
  else if ('dev' in ref) {
    const { major, minor } = ref.dev;
    if (!Number.isInteger(major) || major < 0 || major > 0xfff) {
      throw new InvalidArgumentError('device major', major, 'must be an integer in 0..4095');
    }
    if (!Number.isInteger(minor) || minor < 0 || minor > 0xfffff) {
      throw new InvalidArgumentError('device minor', minor, 'must be an integer in 0..1048575');
    }
  } else throw new InvalidArgumentError('device', ref, 'needs a name, a uuid or a dev');
  return ref;
}

/** How a device reference reads in messages: the name, `uuid X` or `maj:min`. */
export function describeRef(ref: DeviceRef): string {
  if ('name' in ref) return ref.name;
  if ('uuid' in ref) return `uuid ${ref.uuid}`;
  return formatDev(ref.dev);
}
