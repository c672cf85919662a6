// Sectors and bytes as distinct types: the kernel counts in 512-byte sectors (SECTOR_SHIFT in
// include/linux/blk_types.h) and a number that means one must never be read as the other.
import { InvalidArgumentError } from './errors.js';

declare const sectorsBrand: unique symbol;
declare const bytesBrand: unique symbol;
/** A count or offset of 512-byte sectors (the kernel's sector_t). */
export type Sectors = bigint & { readonly [sectorsBrand]: true };
/** A count or offset of bytes. */
export type Bytes = bigint & { readonly [bytesBrand]: true };

/** The kernel's SECTOR_SHIFT and SECTOR_SIZE: dm tables, dm status and BLKGETSIZE count these. */
export const SECTOR_SHIFT = 9;
export const SECTOR_SIZE = 512;

const U64_MAX = 2n ** 64n - 1n;

/** A byte count that is not a whole number of sectors where the kernel needs one. */
export class SectorAlignmentError extends InvalidArgumentError {
  override readonly name = 'SectorAlignmentError';
  constructor(argument: string, value: bigint) {
    super(argument, value, `is not a multiple of ${SECTOR_SIZE} bytes (one sector)`);
  }
}

/** A u64 (sector_t, a transaction id, a byte count): an integer in 0..2^64-1. */
export function u64(n: bigint | number, what: string): bigint {
  if (typeof n === 'number') {
    if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(what, n, 'must be a safe integer');
    n = BigInt(n);
  } else if (typeof n !== 'bigint') {
    throw new InvalidArgumentError(what, n, 'must be a bigint or an integer');
  }
  if (n < 0n) throw new InvalidArgumentError(what, n, 'must not be negative');
  if (n > U64_MAX) throw new InvalidArgumentError(what, n, 'does not fit 64 bits');
  return n;
}

/** A sector count or offset: a non-negative integer that fits the kernel's u64 sector_t. */
export function sectors(n: bigint | number, what = 'sector count'): Sectors {
  return u64(n, what) as Sectors;
}

/** A byte count or offset: a non-negative integer that fits a u64. */
export function bytes(n: bigint | number, what = 'byte count'): Bytes {
  return u64(n, what) as Bytes;
}

/** The bytes of `s` sectors; refuses a result past 2^64-1. */
export function sectorsToBytes(s: Sectors, what = 'sector count'): Bytes {
  return bytes(s << BigInt(SECTOR_SHIFT), `${what} in bytes`);
}

/** The sectors of `b` bytes; refuses a byte count that is not a whole number of sectors. */
export function bytesToSectors(b: Bytes, what = 'byte count'): Sectors {
  if (b % BigInt(SECTOR_SIZE) !== 0n) throw new SectorAlignmentError(what, b);
  return (b >> BigInt(SECTOR_SHIFT)) as Sectors;
}
