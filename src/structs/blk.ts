// Block-device ioctls from /usr/include/linux/fs.h, computed from their macros.
import { _IO, _IOR } from './ioc.js';
import { DecodeError, EncodeError } from './errors.js';
import { checkU64, viewOf } from './bytes.js';

const BLK_IOC = 0x12;
/** sizeof(size_t) on the 64-bit targets this library supports; BLKGETSIZE64 is declared with it. */
export const SIZEOF_SIZE_T = 8;
const SECTOR_SIZE = 512;

/** Device size in bytes into a u64 (declared _IOR(..., size_t), i.e. 0x80081272 on 64-bit). */
export const BLKGETSIZE64 = _IOR(BLK_IOC, 114, SIZEOF_SIZE_T);
/** Logical sector size into an int. */
export const BLKSSZGET = _IO(BLK_IOC, 104);
/** Physical block size into an unsigned int. */
export const BLKPBSZGET = _IO(BLK_IOC, 123);
/** Discard a byte range given as u64[2] {start, length}, both multiples of 512. */
export const BLKDISCARD = _IO(BLK_IOC, 119);
/** Zero a byte range, u64[2] like BLKDISCARD. */
export const BLKZEROOUT = _IO(BLK_IOC, 127);
/** Flush the buffer cache (no argument). */
export const BLKFLSBUF = _IO(BLK_IOC, 97);
/** Whether discarded blocks read back zero, into an unsigned int (always 0 on current kernels). */
export const BLKDISCARDZEROES = _IO(BLK_IOC, 124);

/** The __u64 range[2] that BLKDISCARD and BLKZEROOUT read (block/ioctl.c). */
export const BLK_RANGE_OFFSETS = { start: 0, length: 8 } as const;
const BLK_RANGE_SIZE = 16;

/** The u64[2] {start, length} of BLKDISCARD/BLKZEROOUT. The kernel refuses ranges not 512-aligned. */
export function encodeRange(startBytes: bigint, lengthBytes: bigint): Uint8Array {
  checkU64('blk_range', 'start', startBytes);
  checkU64('blk_range', 'length', lengthBytes);
  if (startBytes % BigInt(SECTOR_SIZE) !== 0n || lengthBytes % BigInt(SECTOR_SIZE) !== 0n) {
    throw new EncodeError('blk_range', 'start', `start ${startBytes} and length ${lengthBytes} must be multiples of ${SECTOR_SIZE}`);
  }
  checkU64('blk_range', 'end', startBytes + lengthBytes);
  const out = new Uint8Array(BLK_RANGE_SIZE);
  const view = viewOf(out);
  view.setBigUint64(BLK_RANGE_OFFSETS.start, startBytes, true);
  view.setBigUint64(BLK_RANGE_OFFSETS.length, lengthBytes, true);
  return out;
}

export function decodeU64(buf: Uint8Array): bigint {
  if (buf.length < 8) throw new DecodeError('u64', 0, `${buf.length} bytes, need 8`);
  return viewOf(buf).getBigUint64(0, true);
}

/** The int/unsigned int that BLKSSZGET, BLKPBSZGET and BLKDISCARDZEROES write. */
export function decodeU32(buf: Uint8Array): number {
  if (buf.length < 4) throw new DecodeError('u32', 0, `${buf.length} bytes, need 4`);
  return viewOf(buf).getUint32(0, true);
}
