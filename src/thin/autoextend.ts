// The auto-extend policy of lvm.conf(5)'s activation section, for a pool's data or metadata:
//   thin_pool_autoextend_threshold: extend when use exceeds this percent; 100 turns it off; a value
//     below 50 counts as 50.
//   thin_pool_autoextend_percent: extend by this percent of the current size.
// As lvextend --use-policies, the step is at least what brings use back to the threshold (a pool
// found far past it is not left above it by a small percent). The new size is rounded up to the
// unit (the data block size, or the 4 KiB metadata block), capped at what the device can use, and
// bounded by the room left on the file system that holds the loop file.
import { type Bytes, bytes } from '../structs/units.js';
import { OptionError } from './errors.js';

export interface AutoextendPolicy {
  /** Percent of use above which to extend; 100 = never. */
  threshold: number;
  /** Percent of the current size to add. */
  percent: number;
}

/** lvm's defaults: auto-extend off, 20 % a step. */
export const AUTOEXTEND_DEFAULTS: Readonly<AutoextendPolicy> = { threshold: 100, percent: 20 };
/** lvm.conf(5): "The minimum value is 50 (a smaller value is treated as 50.)" */
export const AUTOEXTEND_MIN_THRESHOLD = 50;

/** The policy as lvm reads it: integers, threshold 0..100 (below 50 is 50), percent > 0 when on. */
export function autoextendPolicy(threshold: number, percent: number): AutoextendPolicy {
  if (!Number.isInteger(threshold) || threshold < 0 || threshold > 100) {
    throw new OptionError(
      'thin_pool_autoextend_threshold',
      String(threshold),
      'must be an integer percent 0..100 (100 turns auto-extend off)',
    );
  }
  if (!Number.isInteger(percent) || percent < 0 || (percent === 0 && threshold < 100)) {
    throw new OptionError('thin_pool_autoextend_percent', String(percent), 'must be a whole percent above 0');
  }
  return { threshold: Math.max(threshold, AUTOEXTEND_MIN_THRESHOLD), percent };
}

export function autoextendOn(p: AutoextendPolicy): boolean {
  return p.threshold < 100;
}

export interface ExtendInput {
  usedBytes: Bytes;
  totalBytes: Bytes;
  /** The size's granularity: the pool's data block size, or the metadata block. */
  unitBytes: Bytes;
  /** Bytes the file system can still give the file (statfs free space less the files' unbacked holes). */
  roomBytes: bigint;
  /** The largest size the device can use (metadata: THIN_METADATA_MAX_SECTORS). */
  maxBytes?: Bytes;
  /** Extend even at or below the threshold (the pool is out of data space). */
  force?: boolean;
}

export type ExtendDecision =
  | { action: 'none' }
  /** `sizeBytes` < `wantedBytes` when the room or the maximum cut the step short. */
  | { action: 'extend'; sizeBytes: Bytes; wantedBytes: Bytes; limitedBy: 'room' | 'max' | null }
  /** Over the threshold with no whole unit to add. */
  | { action: 'no-room'; wantedBytes: Bytes; limitedBy: 'room' | 'max' };

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;

/** Whether `used` of `total` exceeds `threshold` percent: used/total > threshold/100, in integers. */
export function overThreshold(used: bigint, total: bigint, threshold: number): boolean {
  return used * 100n > BigInt(threshold) * total;
}

/** What the policy does for one device's use. */
export function extendDecision(p: AutoextendPolicy, x: ExtendInput): ExtendDecision {
  if (!autoextendOn(p)) return { action: 'none' };
  if (!x.force && !overThreshold(x.usedBytes, x.totalBytes, p.threshold)) return { action: 'none' };
  if (x.unitBytes <= 0n) throw new OptionError('unit', String(x.unitBytes), 'must be positive');
  const step = ceilDiv(x.totalBytes * BigInt(p.percent), 100n);
  // The size at which use is back at the threshold: used / size <= threshold / 100.
  const back = ceilDiv(x.usedBytes * 100n, BigInt(p.threshold));
  const wanted = roundUp(bigMax(x.totalBytes + step, back), x.unitBytes);
  let size = wanted;
  let limitedBy: 'room' | 'max' | null = null;
  if (x.maxBytes !== undefined && size > x.maxBytes) {
    size = (x.maxBytes / x.unitBytes) * x.unitBytes;
    limitedBy = 'max';
  }
  const room = x.roomBytes > 0n ? (x.roomBytes / x.unitBytes) * x.unitBytes : 0n;
  if (size - x.totalBytes > room) {
    size = x.totalBytes + room;
    limitedBy = 'room';
  }
  if (size <= x.totalBytes) return { action: 'no-room', wantedBytes: bytes(wanted), limitedBy: limitedBy ?? 'room' };
  return { action: 'extend', sizeBytes: bytes(size), wantedBytes: bytes(wanted), limitedBy };
}

function roundUp(n: bigint, unit: bigint): bigint {
  return ceilDiv(n, unit) * unit;
}

function bigMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
