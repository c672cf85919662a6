// The pool's options: Docker's `--storage-opt dm.key=value` strings or a typed object, validated
// in full before anything on disk or in the kernel is touched.
//
// Sizes follow Docker's go-units RAMInBytes: a decimal number (fractions allowed, truncated to a
// whole byte), an optional space, then an optional unit k/m/g/t/p with optional `i` and `b`, any
// case. Every unit is binary: 10G = 10g = 10GB = 10GiB = 10 * 2^30 bytes; a bare number is bytes.
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { deviceName, type DeviceName } from '../dm/names.js';
import { type Bytes, bytes, SECTOR_SIZE } from '../structs/units.js';
import { OptionError } from './errors.js';

export type FsType = 'ext4' | 'xfs';

/** Validated options; every size in bytes. */
export interface PoolOptions {
  baseSizeBytes: Bytes;
  loopDataSizeBytes: Bytes;
  loopMetadataSizeBytes: Bytes;
  /** The pool's data block size (dm.blocksize): a multiple of 64 KiB in 64 KiB..1 GiB. */
  dataBlockSizeBytes: Bytes;
  fs: FsType;
  /** Extra mkfs arguments, one argv element per dm.mkfsarg occurrence, verbatim. */
  mkfsArgs: string[];
  /** Extra mount options, one entry per dm.mountopt occurrence (each may hold commas). */
  mountOptions: string[];
  dataDevice?: string;
  metadataDevice?: string;
  /** An existing pool's dm name (a /dev/mapper/ prefix is dropped). */
  thinPoolDevice?: DeviceName;
  /** Discard a device's blocks before deleting it: default on for loop files only. */
  blkDiscard: boolean;
  useDeferredRemoval: boolean;
  useDeferredDeletion: boolean;
  /** Refuse new devices when free data or metadata space is under this percentage (0..99). */
  minFreeSpacePercent: number;
  /** For xfs: /sys/fs/xfs/<dev>/error/metadata/ENOSPC/max_retries, when given. */
  xfsNoSpaceMaxRetries?: number;
  /** Prefix of every dm name (ours; not a Docker option): `<prefix>-<maj>:<min>-<inode>-...`. */
  prefix: string;
  /** Check an inactive pool's metadata before activating it (ours, as lvm2 runs thin_check): default on. */
  thinCheck: boolean;
}

/** The typed spelling: any subset; sizes as bytes (a number or a bigint such as Bytes) or as Docker size strings. */
export interface PoolOptionsInput {
  baseSize?: number | bigint | string;
  loopDataSize?: number | bigint | string;
  loopMetadataSize?: number | bigint | string;
  blockSize?: number | bigint | string;
  fs?: string;
  mkfsArgs?: string[];
  mountOptions?: string[];
  dataDevice?: string;
  metadataDevice?: string;
  thinPoolDevice?: string;
  blkDiscard?: boolean;
  useDeferredRemoval?: boolean;
  useDeferredDeletion?: boolean;
  minFreeSpace?: number | string;
  xfsNoSpaceMaxRetries?: number;
  prefix?: string;
  thinCheck?: boolean;
}

export interface ParseEnv {
  /** Finds an executable by name (mkfs.<dm.fs>, for a base still to be made); default: PATH plus /sbin and /usr/sbin. */
  findExecutable?: (name: string) => string | null;
}

const KiB = 1024;
const GiB = 1024 ** 3;
export const DEFAULTS = {
  baseSizeBytes: bytes(10 * GiB),
  loopDataSizeBytes: bytes(100 * GiB),
  loopMetadataSizeBytes: bytes(2 * GiB),
  dataBlockSizeBytes: bytes(64 * KiB),
  fs: 'ext4' as FsType,
  minFreeSpacePercent: 10,
  prefix: 'devmapper',
} as const;

/** xfsprogs' mkfs.xfs refuses a data section under 300 MiB ("Filesystem must be larger than 300MB."). */
export const XFS_MIN_BYTES = 300 * 1024 * 1024;

const SIZE_RE = /^(\d+(?:\.\d+)?) ?(?:([kmgtp])i?b?|b)?$/i;
const UNIT: Record<string, number> = { k: 1, m: 2, g: 3, t: 4, p: 5 };

/** Docker's RAMInBytes: '10G' -> 10737418240. Throws OptionError naming `key`. */
export function parseSize(key: string, value: string): Bytes {
  const m = SIZE_RE.exec(value.trim());
  if (!m?.[1]) {
    throw new OptionError(key, value, 'not a size: expected a number with an optional unit k, m, g, t, p (binary, e.g. 10G, 512M, 20GB)');
  }
  const unit = m[2]?.toLowerCase();
  const n = Math.floor(Number(m[1]) * 1024 ** (unit ? (UNIT[unit] ?? 0) : 0));
  if (!Number.isSafeInteger(n)) throw new OptionError(key, value, 'size too large');
  return bytes(n);
}

const SIZE_UNITS = ['', 'K', 'M', 'G', 'T', 'P'];

/** Bytes in the options' own spelling: the largest binary unit that divides them (1073741824 -> 1G). */
export function formatSize(n: number | bigint): string {
  let unit = 0;
  let v = BigInt(n);
  while (v >= 1024n && v % 1024n === 0n && unit < SIZE_UNITS.length - 1) {
    v /= 1024n;
    unit++;
  }
  return `${v}${SIZE_UNITS[unit]}`;
}

/** Go's strconv.ParseBool, as Docker used it. */
export function parseBool(key: string, value: string): boolean {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  throw new OptionError(key, value, 'not a boolean (true/false, 1/0, t/f)');
}

const KEYS = [
  'dm.basesize',
  'dm.loopdatasize',
  'dm.loopmetadatasize',
  'dm.fs',
  'dm.mkfsarg',
  'dm.mountopt',
  'dm.datadev',
  'dm.metadatadev',
  'dm.blocksize',
  'dm.blkdiscard',
  'dm.thinpooldev',
  'dm.use_deferred_removal',
  'dm.use_deferred_deletion',
  'dm.min_free_space',
  'dm.xfs_nospace_max_retries',
  'dm.prefix',
  'dm.thin_check',
] as const;
type Key = (typeof KEYS)[number];
const REPEATABLE: ReadonlySet<Key> = new Set(['dm.mkfsarg', 'dm.mountopt']);

/** `dm.key=value` strings -> the typed input. Keys are case-insensitive, as in Docker. */
export function optionsFromStrings(options: readonly string[]): PoolOptionsInput {
  const input: PoolOptionsInput = {};
  const seen = new Set<Key>();
  for (const opt of options) {
    const eq = opt.indexOf('=');
    if (eq < 0) throw new OptionError(opt, undefined, 'expected dm.key=value');
    const rawKey = opt.slice(0, eq).trim().toLowerCase();
    const value = opt.slice(eq + 1);
    if (!(KEYS as readonly string[]).includes(rawKey)) {
      throw new OptionError(rawKey, value, `unknown option (known: ${KEYS.join(', ')})`);
    }
    const key = rawKey as Key;
    if (seen.has(key) && !REPEATABLE.has(key)) throw new OptionError(key, value, 'given more than once');
    seen.add(key);
    switch (key) {
      case 'dm.basesize':
        input.baseSize = parseSize(key, value);
        break;
      case 'dm.loopdatasize':
        input.loopDataSize = parseSize(key, value);
        break;
      case 'dm.loopmetadatasize':
        input.loopMetadataSize = parseSize(key, value);
        break;
      case 'dm.blocksize':
        input.blockSize = parseSize(key, value);
        break;
      case 'dm.fs':
        input.fs = value;
        break;
      case 'dm.mkfsarg':
        input.mkfsArgs = [...(input.mkfsArgs ?? []), value];
        break;
      case 'dm.mountopt':
        input.mountOptions = [...(input.mountOptions ?? []), value];
        break;
      case 'dm.datadev':
        input.dataDevice = value;
        break;
      case 'dm.metadatadev':
        input.metadataDevice = value;
        break;
      case 'dm.thinpooldev':
        input.thinPoolDevice = value;
        break;
      case 'dm.blkdiscard':
        input.blkDiscard = parseBool(key, value);
        break;
      case 'dm.use_deferred_removal':
        input.useDeferredRemoval = parseBool(key, value);
        break;
      case 'dm.use_deferred_deletion':
        input.useDeferredDeletion = parseBool(key, value);
        break;
      case 'dm.min_free_space':
        input.minFreeSpace = value;
        break;
      case 'dm.xfs_nospace_max_retries':
        input.xfsNoSpaceMaxRetries = parseUint(key, value);
        break;
      case 'dm.prefix':
        input.prefix = value;
        break;
      case 'dm.thin_check':
        input.thinCheck = parseBool(key, value);
        break;
    }
  }
  return input;
}

function parseUint(key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new OptionError(key, value, 'not a non-negative integer');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new OptionError(key, value, 'too large');
  return n;
}

function size(key: string, v: number | bigint | string | undefined, dflt: Bytes): Bytes {
  if (v === undefined) return dflt;
  const n = typeof v === 'string' ? parseSize(key, v) : v;
  if (typeof n === 'number' ? !Number.isSafeInteger(n) || n <= 0 : typeof n !== 'bigint' || n <= 0n || n >= 2n ** 64n) {
    throw new OptionError(key, String(v), 'must be a positive whole number of bytes');
  }
  const b = bytes(n);
  if (b % BigInt(SECTOR_SIZE) !== 0n) throw new OptionError(key, String(v), `must be a multiple of ${SECTOR_SIZE} bytes (one sector)`);
  return b;
}

function devicePath(key: string, v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (!isAbsolute(v) || v.includes('\0')) throw new OptionError(key, v, 'must be an absolute path to a block device');
  return v;
}

/** Default executable lookup: $PATH, then the sbin folders a non-root PATH often lacks. */
export function findExecutable(name: string): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Validate options given as `dm.key=value` strings or as a typed object. Throws OptionError.
 * mkfs.<dm.fs> is not looked for here: only a pool whose base is still to be made needs it
 * (requireMkfs, when the pool opens).
 */
export function parsePoolOptions(options: readonly string[] | PoolOptionsInput = {}, _env: ParseEnv = {}): PoolOptions {
  const input = Array.isArray(options) ? optionsFromStrings(options as readonly string[]) : (options as PoolOptionsInput);

  const baseSizeBytes = size('dm.basesize', input.baseSize, DEFAULTS.baseSizeBytes);
  const loopDataSizeBytes = size('dm.loopdatasize', input.loopDataSize, DEFAULTS.loopDataSizeBytes);
  const loopMetadataSizeBytes = size('dm.loopmetadatasize', input.loopMetadataSize, DEFAULTS.loopMetadataSizeBytes);
  const dataBlockSizeBytes = size('dm.blocksize', input.blockSize, DEFAULTS.dataBlockSizeBytes);
  // dm-thin: data block size 128..2097152 sectors, a multiple of 128 (thin-provisioning.rst).
  if (dataBlockSizeBytes % BigInt(64 * KiB) !== 0n || dataBlockSizeBytes < 64 * KiB || dataBlockSizeBytes > GiB) {
    throw new OptionError('dm.blocksize', String(input.blockSize), 'must be a multiple of 64 KiB between 64 KiB and 1 GiB');
  }

  const fsName = input.fs ?? DEFAULTS.fs;
  if (fsName !== 'ext4' && fsName !== 'xfs') throw new OptionError('dm.fs', fsName, 'supported file systems are ext4 and xfs');
  if (fsName === 'xfs' && baseSizeBytes < XFS_MIN_BYTES) {
    throw new OptionError(
      'dm.basesize',
      formatSize(baseSizeBytes),
      'mkfs.xfs refuses file systems under 300 MiB (xfsprogs 5.19 and later): give dm.basesize=300M or more',
    );
  }

  const mkfsArgs = [...(input.mkfsArgs ?? [])];
  for (const a of mkfsArgs) {
    if (typeof a !== 'string' || a.includes('\0')) throw new OptionError('dm.mkfsarg', String(a), 'must be a string without NUL');
  }
  const mountOptions = [...(input.mountOptions ?? [])];
  for (const o of mountOptions) {
    if (typeof o !== 'string' || o === '' || o.includes('\0'))
      throw new OptionError('dm.mountopt', String(o), 'must be a non-empty string');
  }

  const dataDevice = devicePath('dm.datadev', input.dataDevice);
  const metadataDevice = devicePath('dm.metadatadev', input.metadataDevice);
  if ((dataDevice === undefined) !== (metadataDevice === undefined)) {
    const [k, v] = dataDevice === undefined ? ['dm.metadatadev', metadataDevice] : ['dm.datadev', dataDevice];
    throw new OptionError(k, v, 'dm.datadev and dm.metadatadev must be given together');
  }
  let thinPoolDevice: DeviceName | undefined;
  if (input.thinPoolDevice !== undefined) {
    try {
      thinPoolDevice = deviceName(input.thinPoolDevice.replace(/^\/dev\/mapper\//, ''));
    } catch {
      throw new OptionError('dm.thinpooldev', input.thinPoolDevice, 'must be a device-mapper name (or /dev/mapper/<name>)');
    }
    if (dataDevice !== undefined)
      throw new OptionError('dm.thinpooldev', thinPoolDevice, 'cannot be combined with dm.datadev/dm.metadatadev');
  }
  const loopback = dataDevice === undefined && thinPoolDevice === undefined;
  if (loopback && loopDataSizeBytes < dataBlockSizeBytes) {
    throw new OptionError(
      'dm.loopdatasize',
      formatSize(loopDataSizeBytes),
      `must hold at least one data block (dm.blocksize ${dataBlockSizeBytes / BigInt(KiB)} KiB)`,
    );
  }
  if (!loopback) {
    // Options that would silently do nothing are mistakes, not preferences.
    if (input.loopDataSize !== undefined)
      throw new OptionError('dm.loopdatasize', String(input.loopDataSize), 'only applies to loop files (no dm.datadev/dm.thinpooldev)');
    if (input.loopMetadataSize !== undefined)
      throw new OptionError(
        'dm.loopmetadatasize',
        String(input.loopMetadataSize),
        'only applies to loop files (no dm.datadev/dm.thinpooldev)',
      );
  }
  if (thinPoolDevice !== undefined && input.blockSize !== undefined) {
    throw new OptionError('dm.blocksize', String(input.blockSize), 'an existing pool (dm.thinpooldev) keeps its own block size');
  }

  const minFreeSpacePercent = parsePercent(input.minFreeSpace);

  const retries = input.xfsNoSpaceMaxRetries;
  if (retries !== undefined) {
    if (!Number.isSafeInteger(retries) || retries < 0)
      throw new OptionError('dm.xfs_nospace_max_retries', String(retries), 'not a non-negative integer');
    if (fsName !== 'xfs') throw new OptionError('dm.xfs_nospace_max_retries', String(retries), 'only applies to dm.fs=xfs');
  }

  const prefix = input.prefix ?? DEFAULTS.prefix;
  if (!/^[A-Za-z0-9_.+-]{1,32}$/.test(prefix)) {
    throw new OptionError('dm.prefix', prefix, 'must be 1..32 characters of letters, digits, _ . + -');
  }

  if (input.thinCheck !== undefined && typeof input.thinCheck !== 'boolean') {
    throw new OptionError('dm.thin_check', String(input.thinCheck), 'must be a boolean');
  }

  const result: PoolOptions = {
    baseSizeBytes,
    loopDataSizeBytes,
    loopMetadataSizeBytes,
    dataBlockSizeBytes,
    fs: fsName,
    mkfsArgs,
    mountOptions,
    blkDiscard: input.blkDiscard ?? loopback,
    useDeferredRemoval: input.useDeferredRemoval ?? false,
    useDeferredDeletion: input.useDeferredDeletion ?? false,
    minFreeSpacePercent,
    prefix,
    thinCheck: input.thinCheck ?? true,
  };
  if (dataDevice !== undefined) result.dataDevice = dataDevice;
  if (metadataDevice !== undefined) result.metadataDevice = metadataDevice;
  if (thinPoolDevice !== undefined) result.thinPoolDevice = thinPoolDevice;
  if (retries !== undefined) result.xfsNoSpaceMaxRetries = retries;
  return result;
}

/** Docker requires the '%': `dm.min_free_space=10%`. Typed callers may pass a number. */
function parsePercent(v: number | string | undefined): number {
  const key = 'dm.min_free_space';
  if (v === undefined) return DEFAULTS.minFreeSpacePercent;
  let n: number;
  if (typeof v === 'number') n = v;
  else {
    const m = /^(\d+)%$/.exec(v.trim());
    if (!m) throw new OptionError(key, v, 'must be a percentage like 10%');
    n = Number(m[1]);
  }
  if (!Number.isInteger(n) || n < 0 || n > 99) throw new OptionError(key, String(v), 'must be a whole percentage in 0%..99%');
  return n;
}
