// struct dm_name_list (dm-ioctl.h): the DM_LIST_DEVICES reply. Each record: dev u64, next u32
// (from the start of THIS record; 0 ends the list), the NUL-terminated name at offset 12, then on
// kernels since 4.46 (5.13) a tail at the 8-aligned end of the name: event_nr u32, flags u32 and,
// with DM_NAME_LIST_FLAG_HAS_UUID, the NUL-terminated uuid.
import { DecodeError, EncodeError } from './errors.js';
import { cstringBytes, readCString } from './cstring.js';
import {
  DM_NAME_LEN,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_NAME_LIST_OFFSETS as REC,
  DM_NAME_LIST_TAIL_OFFSETS as TAIL,
  DM_NAME_LIST_TAIL_SIZE,
  DM_UUID_LEN,
} from './dm-abi.js';
import { align8, checkU32, checkU64, viewOf } from './bytes.js';

export {
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_NAME_LIST_OFFSETS,
  DM_NAME_LIST_TAIL_OFFSETS,
} from './dm-abi.js';

const STRUCT = 'dm_name_list';
/** offsetof(struct dm_name_list, name): the kernel sizes records from here, not sizeof (16). */
export const DM_NAME_LIST_NAME_OFFSET = REC.name;

export interface DmNameListEntry {
  dev: bigint;
  name: string;
  /** Absent on kernels without the tail. */
  event_nr?: number;
  flags?: number;
  /** Only when the request carried DM_UUID_FLAG and the device has one. */
  uuid?: string;
}

/** One record as the reader sees it; `devLow` is the low 32 bits of `dev` (all that huge_decode_dev reads). */
export interface DmNameListRecord {
  devLow: number;
  devHigh: number;
  name: string;
  /** Absent (undefined) on kernels without the tail. */
  event_nr: number | undefined;
  flags: number | undefined;
  uuid: string | undefined;
}

/**
 * Walks the payload (data_start..data_size) record by record without building an array of bigints:
 * the reader under decodeNameList, and what DM_LIST_DEVICES of 10,000 devices uses directly (bench
 * P2). `visit` gets a record object that is reused: copy what it keeps. With no devices the kernel
 * sets data_size to data_start (an empty payload) and zeroes `dev` at data_start: both visit nothing.
 */
export function readNameList(payload: Uint8Array, visit: (r: DmNameListRecord) => void): void {
  if (payload.length === 0) return;
  if (payload.length < 8) throw new DecodeError(STRUCT, 0, `${payload.length} bytes cannot hold a dev`);
  const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (b.readUInt32LE(0) === 0 && b.readUInt32LE(4) === 0) return;
  const r: DmNameListRecord = { devLow: 0, devHigh: 0, name: '', event_nr: undefined, flags: undefined, uuid: undefined };
  let off = 0;
  for (;;) {
    if (off + REC.name > b.length) {
      throw new DecodeError(STRUCT, off, `record runs past the ${b.length}-byte payload`);
    }
    const next = b.readUInt32LE(off + REC.next);
    const end = next === 0 ? b.length : off + next;
    if (end > b.length) {
      throw new DecodeError(STRUCT, off + REC.next, `next ${next} points outside the ${b.length}-byte payload`);
    }
    const nameOff = off + REC.name;
    const nul = b.indexOf(0, nameOff);
    if (nul < 0 || nul >= end) throw new DecodeError(STRUCT, nameOff, `name has no NUL before byte ${end}`);
    r.devLow = b.readUInt32LE(off + REC.dev);
    r.devHigh = b.readUInt32LE(off + REC.dev + 4);
    r.name = b.toString('utf8', nameOff, nul);
    const tail = align8(nul + 1);
    if (end - tail >= DM_NAME_LIST_TAIL_SIZE) {
      r.event_nr = b.readUInt32LE(tail + TAIL.event_nr);
      r.flags = b.readUInt32LE(tail + TAIL.flags);
      r.uuid = r.flags & DM_NAME_LIST_FLAG_HAS_UUID ? readCString(b, tail + TAIL.uuid, end, STRUCT, 'uuid') : undefined;
    } else {
      r.event_nr = r.flags = r.uuid = undefined;
    }
    visit(r);
    if (next === 0) return;
    if (next + REC.name > b.length - off) {
      throw new DecodeError(STRUCT, off + REC.next, `next ${next} leaves no room for another record`);
    }
    off += next; // next >= nul + 1 - off > 0: the walk always advances, so it ends.
  }
}

/** Decodes the payload into entries (see readNameList). */
export function decodeNameList(payload: Uint8Array): DmNameListEntry[] {
  const entries: DmNameListEntry[] = [];
  readNameList(payload, (r) => {
    const entry: DmNameListEntry = { dev: (BigInt(r.devHigh) << 32n) | BigInt(r.devLow), name: r.name };
    if (r.event_nr !== undefined) entry.event_nr = r.event_nr;
    if (r.flags !== undefined) entry.flags = r.flags;
    if (r.uuid !== undefined) entry.uuid = r.uuid;
    entries.push(entry);
  });
  return entries;
}

/**
 * Builds a kernel-shaped LIST_DEVICES payload (as 6.1's list_devices() writes it): `withTail` adds
 * event_nr/flags (newer kernels); a uuid is written when flags has HAS_UUID (default flags: HAS_UUID
 * when `uuid` is given, else 0). The last record's next is 0; no devices gives an empty payload.
 */
export function encodeNameList(entries: readonly DmNameListEntry[], opts: { withTail: boolean }): Uint8Array {
  const parts = entries.map((e, i) => {
    checkU64(STRUCT, `[${i}].dev`, e.dev);
    if (e.dev === 0n) throw new EncodeError(STRUCT, `[${i}].dev`, 'dev 0 marks an empty list');
    const name = cstringBytes(STRUCT, `[${i}].name`, e.name, DM_NAME_LEN);
    const flags = checkU32(STRUCT, `[${i}].flags`, e.flags ?? (e.uuid !== undefined ? DM_NAME_LIST_FLAG_HAS_UUID : 0));
    const eventNr = checkU32(STRUCT, `[${i}].event_nr`, e.event_nr ?? 0);
    let uuid: Uint8Array | undefined;
    if (flags & DM_NAME_LIST_FLAG_HAS_UUID) {
      if (!opts.withTail) throw new EncodeError(STRUCT, `[${i}].uuid`, 'needs the event_nr/flags tail');
      uuid = cstringBytes(STRUCT, `[${i}].uuid`, e.uuid ?? '', DM_UUID_LEN);
    }
    const tail = align8(REC.name + name.length + 1);
    let size = tail;
    if (opts.withTail) size += DM_NAME_LIST_TAIL_SIZE;
    if (uuid) size += align8(uuid.length + 1);
    return { e, name, flags, eventNr, uuid, tail, size };
  });
  const out = new Uint8Array(parts.reduce((s, p) => s + p.size, 0));
  const view = viewOf(out);
  let off = 0;
  parts.forEach((p, i) => {
    view.setBigUint64(off + REC.dev, p.e.dev, true);
    view.setUint32(off + REC.next, i === parts.length - 1 ? 0 : p.size, true);
    out.set(p.name, off + REC.name);
    if (opts.withTail) {
      view.setUint32(off + p.tail + TAIL.event_nr, p.eventNr, true);
      view.setUint32(off + p.tail + TAIL.flags, p.flags, true);
      if (p.uuid) out.set(p.uuid, off + p.tail + TAIL.uuid);
    }
    off += p.size;
  });
  return out;
}
