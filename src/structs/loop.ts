// struct loop_info64 (232 bytes) and struct loop_config (304 bytes), /usr/include/linux/loop.h,
// and the loop ioctl numbers. The kernel defines those as plain numbers, not _IO() macros, so
// they are written here as the header writes them.
import { DecodeError, EncodeError } from './errors.js';
import { checkU32, checkU64, viewOf } from './bytes.js';

export const LO_NAME_SIZE = 64;
export const LO_KEY_SIZE = 32;

export const LoFlag = {
  LO_FLAGS_READ_ONLY: 1,
  LO_FLAGS_AUTOCLEAR: 4,
  LO_FLAGS_PARTSCAN: 8,
  LO_FLAGS_DIRECT_IO: 16,
} as const;
export type LoFlagName = keyof typeof LoFlag;

/** LO_FLAGS that LOOP_SET_STATUS64 may set / clear, and LOOP_CONFIGURE may set (loop.h). */
export const LOOP_SET_STATUS_SETTABLE_FLAGS = LoFlag.LO_FLAGS_AUTOCLEAR | LoFlag.LO_FLAGS_PARTSCAN;
export const LOOP_SET_STATUS_CLEARABLE_FLAGS = LoFlag.LO_FLAGS_AUTOCLEAR;
export const LOOP_CONFIGURE_SETTABLE_FLAGS =
  LoFlag.LO_FLAGS_READ_ONLY | LoFlag.LO_FLAGS_AUTOCLEAR | LoFlag.LO_FLAGS_PARTSCAN | LoFlag.LO_FLAGS_DIRECT_IO;

export const LOOP_IOC_MAGIC = 0x4c;
export const LOOP_SET_FD = 0x4c00;
export const LOOP_CLR_FD = 0x4c01;
export const LOOP_SET_STATUS = 0x4c02;
export const LOOP_GET_STATUS = 0x4c03;
export const LOOP_SET_STATUS64 = 0x4c04;
export const LOOP_GET_STATUS64 = 0x4c05;
export const LOOP_CHANGE_FD = 0x4c06;
export const LOOP_SET_CAPACITY = 0x4c07;
export const LOOP_SET_DIRECT_IO = 0x4c08;
export const LOOP_SET_BLOCK_SIZE = 0x4c09;
export const LOOP_CONFIGURE = 0x4c0a;
/** /dev/loop-control. */
export const LOOP_CTL_ADD = 0x4c80;
export const LOOP_CTL_REMOVE = 0x4c81;
export const LOOP_CTL_GET_FREE = 0x4c82;

export const LOOP_INFO64_SIZE = 232;
export const LOOP_CONFIG_SIZE = 304;

/** struct loop_info64. */
export const LOOP_INFO64_OFFSETS = {
  lo_device: 0,
  lo_inode: 8,
  lo_rdevice: 16,
  lo_offset: 24,
  lo_sizelimit: 32,
  lo_number: 40,
  lo_encrypt_type: 44,
  lo_encrypt_key_size: 48,
  lo_flags: 52,
  lo_file_name: 56,
  lo_crypt_name: 120,
  lo_encrypt_key: 184,
  lo_init: 216, // __u64[2]
} as const;
const OFF = LOOP_INFO64_OFFSETS;

/** struct loop_config; __reserved (__u64[8]) is zero on encode and ignored on decode. */
export const LOOP_CONFIG_OFFSETS = {
  fd: 0,
  block_size: 4,
  info: 8, // struct loop_info64
  __reserved: 240,
} as const;
const CFG = LOOP_CONFIG_OFFSETS;

export interface LoopInfo64 {
  lo_device: bigint;
  lo_inode: bigint;
  lo_rdevice: bigint;
  lo_offset: bigint;
  /** Bytes; 0 = up to the end of the backing file. */
  lo_sizelimit: bigint;
  lo_number: number;
  lo_encrypt_type: number;
  lo_encrypt_key_size: number;
  lo_flags: number;
  lo_file_name: string;
  lo_crypt_name: string;
  lo_encrypt_key: Uint8Array;
  lo_init: [bigint, bigint];
}

export interface LoopConfig {
  fd: number;
  /** Logical block size in bytes; 0 keeps the default (512). */
  block_size: number;
  info: Partial<LoopInfo64>;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

/**
 * A __u8[64] name: up to all 64 bytes, NUL-terminated only if shorter. The kernel forces the last
 * byte to NUL itself and a read-modify-write of a kernel reply must round-trip, so 64 is allowed.
 */
function writeName(buf: Uint8Array, off: number, field: string, value: string, struct: string): void {
  const bytes = utf8.encode(value);
  if (bytes.length > LO_NAME_SIZE) throw new EncodeError(struct, field, `${bytes.length} bytes does not fit ${LO_NAME_SIZE}`);
  if (bytes.includes(0)) throw new EncodeError(struct, field, 'holds a NUL byte');
  buf.set(bytes, off);
}

/** Reads a __u8[64] name that the kernel may fill to the end without a NUL (long paths, truncated). */
function readName(buf: Uint8Array, off: number): string {
  const field = buf.subarray(off, off + LO_NAME_SIZE);
  const nul = field.indexOf(0);
  return utf8Decoder.decode(nul < 0 ? field : field.subarray(0, nul));
}

/** Truncates a path to what lo_file_name keeps (63 bytes and the NUL), at a UTF-8 character boundary. */
export function truncateLoFileName(path: string): string {
  let out = '';
  let size = 0;
  for (const ch of path) {
    const n = utf8.encode(ch).length;
    if (size + n > LO_NAME_SIZE - 1) break;
    out += ch;
    size += n;
  }
  return out;
}

function writeInfo(buf: Uint8Array, base: number, info: Partial<LoopInfo64>, struct: string): void {
  const view = viewOf(buf);
  for (const f of ['lo_device', 'lo_inode', 'lo_rdevice', 'lo_offset', 'lo_sizelimit'] as const) {
    view.setBigUint64(base + OFF[f], checkU64(struct, f, info[f] ?? 0n), true);
  }
  for (const f of ['lo_number', 'lo_encrypt_type', 'lo_encrypt_key_size', 'lo_flags'] as const) {
    view.setUint32(base + OFF[f], checkU32(struct, f, info[f] ?? 0), true);
  }
  writeName(buf, base + OFF.lo_file_name, 'lo_file_name', info.lo_file_name ?? '', struct);
  writeName(buf, base + OFF.lo_crypt_name, 'lo_crypt_name', info.lo_crypt_name ?? '', struct);
  const key = info.lo_encrypt_key ?? new Uint8Array(0);
  if (key.length > LO_KEY_SIZE) throw new EncodeError(struct, 'lo_encrypt_key', `${key.length} bytes does not fit ${LO_KEY_SIZE}`);
  buf.set(key, base + OFF.lo_encrypt_key);
  const init = info.lo_init ?? [0n, 0n];
  view.setBigUint64(base + OFF.lo_init, checkU64(struct, 'lo_init[0]', init[0]), true);
  view.setBigUint64(base + OFF.lo_init + 8, checkU64(struct, 'lo_init[1]', init[1]), true);
}

function readInfo(buf: Uint8Array, base: number): LoopInfo64 {
  const view = viewOf(buf);
  const u64 = (off: number): bigint => view.getBigUint64(base + off, true);
  const u32 = (off: number): number => view.getUint32(base + off, true);
  return {
    lo_device: u64(OFF.lo_device),
    lo_inode: u64(OFF.lo_inode),
    lo_rdevice: u64(OFF.lo_rdevice),
    lo_offset: u64(OFF.lo_offset),
    lo_sizelimit: u64(OFF.lo_sizelimit),
    lo_number: u32(OFF.lo_number),
    lo_encrypt_type: u32(OFF.lo_encrypt_type),
    lo_encrypt_key_size: u32(OFF.lo_encrypt_key_size),
    lo_flags: u32(OFF.lo_flags),
    lo_file_name: readName(buf, base + OFF.lo_file_name),
    lo_crypt_name: readName(buf, base + OFF.lo_crypt_name),
    lo_encrypt_key: buf.slice(base + OFF.lo_encrypt_key, base + OFF.lo_encrypt_key + LO_KEY_SIZE),
    lo_init: [u64(OFF.lo_init), u64(OFF.lo_init + 8)],
  };
}

/** Fields left out are zero, as a zeroed C struct. */
export function encodeLoopInfo64(info: Partial<LoopInfo64>): Uint8Array {
  const buf = new Uint8Array(LOOP_INFO64_SIZE);
  writeInfo(buf, 0, info, 'loop_info64');
  return buf;
}

export function decodeLoopInfo64(buf: Uint8Array): LoopInfo64 {
  if (buf.length < LOOP_INFO64_SIZE) throw new DecodeError('loop_info64', 0, `${buf.length} bytes, need ${LOOP_INFO64_SIZE}`);
  return readInfo(buf, 0);
}

export function encodeLoopConfig(config: LoopConfig): Uint8Array {
  const buf = new Uint8Array(LOOP_CONFIG_SIZE);
  const view = viewOf(buf);
  view.setUint32(CFG.fd, checkU32('loop_config', 'fd', config.fd), true);
  view.setUint32(CFG.block_size, checkU32('loop_config', 'block_size', config.block_size), true);
  writeInfo(buf, CFG.info, config.info, 'loop_config');
  return buf;
}

export function decodeLoopConfig(buf: Uint8Array): LoopConfig & { info: LoopInfo64 } {
  if (buf.length < LOOP_CONFIG_SIZE) throw new DecodeError('loop_config', 0, `${buf.length} bytes, need ${LOOP_CONFIG_SIZE}`);
  const view = viewOf(buf);
  return {
    fd: view.getUint32(CFG.fd, true),
    block_size: view.getUint32(CFG.block_size, true),
    info: readInfo(buf, CFG.info),
  };
}

/** Names of the bits set in lo_flags; unknown bits as `0x...`. */
export function loFlagNames(flags: number): string[] {
  const names: string[] = [];
  let rest = flags >>> 0;
  for (const [name, bit] of Object.entries(LoFlag)) {
    if (rest & bit) {
      names.push(name);
      rest = (rest & ~bit) >>> 0;
    }
  }
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names;
}
