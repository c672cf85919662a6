// struct dm_target_spec (dm-ioctl.h): 40 bytes, then the NUL-terminated params, padded so the
// next spec starts 8-aligned. TABLE_LOAD sends them with `next` relative to the current spec;
// TABLE_STATUS and DEV_WAIT return them with `next` counted from the start of the payload.
import { DecodeError, EncodeError } from './errors.js';
import { DM_IOCTL_SIZE, DM_MAX_TYPE_NAME, DM_TARGET_SPEC_OFFSETS as SPEC, DM_TARGET_SPEC_SIZE } from './dm-abi.js';
import { DM_ALIGNMENT, align8, checkU64, viewOf } from './bytes.js';
import type { DmPayloadArena } from './dm-ioctl.js';

export { DM_TARGET_SPEC_OFFSETS, DM_TARGET_SPEC_SIZE } from './dm-abi.js';

const STRUCT = 'dm_target_spec';

export interface DmTargetSpecIn {
  sector_start: bigint;
  length: bigint;
  target_type: string;
  params: string;
}

export interface DmTargetSpec extends DmTargetSpecIn {
  status: number;
}

/** Which meaning `next` has: TABLE_LOAD input (from this spec) or TABLE_STATUS output (from the first). */
export type TargetSpecNext = 'relative' | 'from-start';

/** One decoded spec with where it sat and its raw `next`, for the decode CLI. */
export interface DmTargetSpecAt extends DmTargetSpec {
  offset: number;
  next: number;
}

const utf8Decoder = new TextDecoder('utf-8');

function checkedSpec(spec: DmTargetSpecIn, i: number): number {
  const field = `[${i}]`;
  checkU64(STRUCT, `${field}.sector_start`, spec.sector_start);
  checkU64(STRUCT, `${field}.length`, spec.length);
  if (spec.target_type === '') throw new EncodeError(STRUCT, `${field}.target_type`, 'is empty');
  if (spec.params.includes('\0')) throw new EncodeError(STRUCT, `${field}.params`, 'holds a NUL byte');
  // target_type as writeCString checks it, here where the spec's index is at hand.
  const typeLength = Buffer.byteLength(spec.target_type, 'utf8');
  if (typeLength >= DM_MAX_TYPE_NAME) {
    throw new EncodeError(STRUCT, `${field}.target_type`, `${typeLength} bytes does not fit ${DM_MAX_TYPE_NAME - 1} bytes and a NUL`);
  }
  if (spec.target_type.includes('\0')) throw new EncodeError(STRUCT, `${field}.target_type`, 'holds a NUL byte');
  return align8(DM_TARGET_SPEC_SIZE + Buffer.byteLength(spec.params, 'utf8') + 1);
}

/** A checked u64 at `off`: a value below 2^32 is written without bigint arithmetic. */
function writeU64(out: Buffer, off: number, value: bigint): void {
  if (value <= 0xffffffffn) {
    out.writeUInt32LE(Number(value), off);
    out.writeUInt32LE(0, off + 4);
  } else out.writeBigUInt64LE(value, off);
}

/**
 * The TABLE_LOAD payload, as libdevmapper lays it out: each spec's `next` is the byte count from
 * its own start to the next spec (the last one's too), params NUL-terminated and zero-padded to 8.
 * Params go to the kernel verbatim: its dm_split_args() reads '\' as an escape, which libdevmapper
 * doubles for its callers and we leave to ours. Strings are encoded in place: one allocation, or
 * none with an arena (the bytes are then the arena's, valid until its next loan).
 */
export function encodeTargetSpecs(specs: readonly DmTargetSpecIn[], arena?: DmPayloadArena): Uint8Array {
  let total = 0;
  for (let i = 0; i < specs.length; i++) total += checkedSpec(specs[i] as DmTargetSpecIn, i);
  const out = arena ? arena.scratch(total) : Buffer.alloc(total);
  let off = 0;
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i] as DmTargetSpecIn;
    writeU64(out, off + SPEC.sector_start, spec.sector_start);
    writeU64(out, off + SPEC.length, spec.length);
    // Checked by checkedSpec; the zeroed buffer holds the NUL and the padding.
    out.write(spec.target_type, off + SPEC.target_type, 'utf8');
    // checkedSpec sized the buffer for these bytes: write() returns all of them.
    const size = align8(DM_TARGET_SPEC_SIZE + out.write(spec.params, off + DM_TARGET_SPEC_SIZE, 'utf8') + 1);
    out.writeUInt32LE(size, off + SPEC.next);
    off += size;
  }
  return out;
}

/** libdevmapper's minimum data_size for every call (it leaves room for status and deps). */
export const LIBDM_MIN_DATA_SIZE = 16 * 1024;

/**
 * The data_size libdevmapper (_flatten) passes with a TABLE_LOAD: header + per spec
 * (40 + strlen(params) + 1 + ALIGNMENT), at least 16 KiB. An over-estimate; the kernel reads
 * the specs by `next`. Given so callers can match libdevmapper's headers byte for byte.
 */
export function libdmTableLoadDataSize(specs: readonly DmTargetSpecIn[]): number {
  let len = DM_IOCTL_SIZE;
  for (const spec of specs) len += DM_TARGET_SPEC_SIZE + Buffer.byteLength(spec.params, 'utf8') + 1 + DM_ALIGNMENT;
  return Math.max(len, LIBDM_MIN_DATA_SIZE);
}

/** Reads `count` specs, checking every offset against the buffer. */
export function readTargetSpecs(payload: Uint8Array, count: number, mode: TargetSpecNext): DmTargetSpecAt[] {
  if (!Number.isInteger(count) || count < 0) throw new DecodeError(STRUCT, 0, `target count ${count} is not a count`);
  if (count * DM_TARGET_SPEC_SIZE > payload.length) {
    throw new DecodeError(STRUCT, 0, `${count} specs need at least ${count * DM_TARGET_SPEC_SIZE} bytes, payload has ${payload.length}`);
  }
  const view = viewOf(payload);
  const specs: DmTargetSpecAt[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + DM_TARGET_SPEC_SIZE > payload.length) {
      throw new DecodeError(STRUCT, off, `spec ${i} of ${count} runs past the ${payload.length}-byte payload`);
    }
    const typeEnd = payload.indexOf(0, off + SPEC.target_type);
    if (typeEnd < 0 || typeEnd >= off + SPEC.target_type + DM_MAX_TYPE_NAME) {
      throw new DecodeError(STRUCT, off + SPEC.target_type, `target_type of spec ${i} has no NUL within ${DM_MAX_TYPE_NAME} bytes`);
    }
    const paramsOff = off + DM_TARGET_SPEC_SIZE;
    const paramsNul = payload.indexOf(0, paramsOff);
    if (paramsNul < 0) throw new DecodeError(STRUCT, paramsOff, `params of spec ${i} have no NUL before the end of the payload`);
    const next = view.getUint32(off + SPEC.next, true);
    specs.push({
      offset: off,
      next,
      sector_start: view.getBigUint64(off + SPEC.sector_start, true),
      length: view.getBigUint64(off + SPEC.length, true),
      status: view.getInt32(off + SPEC.status, true),
      target_type: utf8Decoder.decode(payload.subarray(off + SPEC.target_type, typeEnd)),
      params: utf8Decoder.decode(payload.subarray(paramsOff, paramsNul)),
    });
    // `next` must land at or after this spec's params (so it advances and specs never overlap)
    // and, unless this is the last spec, leave room for a whole spec header.
    const nextAbs = mode === 'relative' ? off + next : next;
    if (nextAbs <= paramsNul) {
      throw new DecodeError(STRUCT, off + SPEC.next, `next ${next} of spec ${i} does not advance past its params (end ${paramsNul + 1})`);
    }
    const last = i === count - 1;
    // The kernel's last `next` is the 8-aligned end of its params, which may lie past data_size.
    const limit = last ? align8(payload.length) : payload.length - DM_TARGET_SPEC_SIZE;
    if (nextAbs > limit) {
      throw new DecodeError(STRUCT, off + SPEC.next, `next ${next} of spec ${i} points outside the ${payload.length}-byte payload`);
    }
    off = nextAbs;
  }
  return specs;
}

function strip({ offset: _o, next: _n, ...spec }: DmTargetSpecAt): DmTargetSpec {
  return spec;
}

/** The TABLE_STATUS (and DEV_WAIT) reply: `count` = the header's target_count, `next` from the payload start. */
export function decodeTargetSpecs(payload: Uint8Array, count: number): DmTargetSpec[] {
  return readTargetSpecs(payload, count, 'from-start').map(strip);
}

/** A TABLE_LOAD request payload (`next` relative to each spec), for decoders and tests. */
export function decodeTableLoadSpecs(payload: Uint8Array, count: number): DmTargetSpec[] {
  return readTargetSpecs(payload, count, 'relative').map(strip);
}

/**
 * Lays specs out as the kernel's retrieve_status() does, for replays and tests: `next` from the
 * payload start, and the payload ending right after the last params' NUL (data_size = data_start
 * + that), not at the aligned end.
 */
export function encodeTargetSpecsReply(specs: readonly DmTargetSpec[]): Uint8Array {
  const relative = encodeTargetSpecs(specs);
  const view = viewOf(relative);
  let off = 0;
  let end = 0;
  specs.forEach((spec, i) => {
    const size = view.getUint32(off + SPEC.next, true);
    view.setUint32(off + SPEC.next, off + size, true);
    view.setInt32(off + SPEC.status, spec.status | 0, true);
    end = off + DM_TARGET_SPEC_SIZE + Buffer.byteLength(specs[i]!.params, 'utf8') + 1;
    off += size;
  });
  return relative.slice(0, end);
}
