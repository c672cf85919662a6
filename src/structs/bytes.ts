// Small helpers shared by the struct codecs: little-endian views and the kernel's 8-byte alignment.
import { EncodeError } from './errors.js';

/** The alignment the kernel and libdevmapper use between records in dm payloads (ALIGN_MASK 7). */
export const DM_ALIGNMENT = 8;

export function align8(n: number): number {
  return (n + 7) & ~7;
}

export function viewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

const U64_MAX = (1n << 64n) - 1n;

/** Checks a value for a __u64 field, so a negative or too-large bigint is an EncodeError, not a RangeError. */
export function checkU64(struct: string, field: string, value: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new EncodeError(struct, field, `${String(value)} is not a u64`);
  }
  return value;
}

/** Checks a value for a __u32 field. */
export function checkU32(struct: string, field: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new EncodeError(struct, field, `${String(value)} is not a u32`);
  }
  return value;
}
