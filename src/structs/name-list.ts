// struct dm_name_list (dm-ioctl.h): the DM_LIST_DEVICES reply. Each record: dev u64, next u32
// (from the start of THIS record; 0 ends the list), the NUL-terminated name at offset 12, then on
// kernels since 4.46 (5.13) a tail at the 8-aligned end of the name: event_nr u32, flags u32 and,
// with DM_NAME_LIST_FLAG_HAS_UUID, the NUL-terminated uuid.
import { DecodeError, EncodeError } from './errors.js';
import { cstringBytes, readCString } from './cstring.js';
import { DM_NAME_LEN, DM_UUID_LEN } from './dm-ioctl.js';
import { align8, checkU32, checkU64, viewOf } from './bytes.js';

const STRUCT = 'dm_name_list';
/** offsetof(struct dm_name_list, name): the kernel sizes records from here, not sizeof (16). */
export const DM_NAME_LIST_NAME_OFFSET = 12;
const TAIL_SIZE = 8;

export const DM_NAME_LIST_FLAG_HAS_UUID = 1;
export const DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID = 2;

export interface DmNameListEntry {
  dev: bigint;
  name: string;
  /** Absent on kernels without the tail. */
  event_nr?: number;
  flags?: number;
  /** Only when the request carried DM_UUID_FLAG and the device has one. */
  uuid?: string;
}

/**
 * Decodes the payload (data_start..data_size). With no devices the kernel sets data_size to
 * data_start (an empty payload) and zeroes `dev` at data_start: both read as [].
 */
export function decodeNameList(payload: Uint8Array): DmNameListEntry[] {
  if (payload.length === 0) return [];
  if (payload.length < 8) throw new DecodeError(STRUCT, 0, `${payload.length} bytes cannot hold a dev`);
  const view = viewOf(payload);
  if (view.getBigUint64(0, true) === 0n) return [];
  const entries: DmNameListEntry[] = [];
  let off = 0;
  for (;;) {
    if (off + DM_NAME_LIST_NAME_OFFSET > payload.length) {
      throw new DecodeError(STRUCT, off, `record runs past the ${payload.length}-byte payload`);
    }
    const next = view.getUint32(off + 8, true);
    const end = next === 0 ? payload.length : off + next;
    if (end > payload.length) {
      throw new DecodeError(STRUCT, off + 8, `next ${next} points outside the ${payload.length}-byte payload`);
    }
    const nameOff = off + DM_NAME_LIST_NAME_OFFSET;
    const name = readCString(payload, nameOff, end, STRUCT, 'name');
    const nameEnd = payload.indexOf(0, nameOff) + 1;
    const entry: DmNameListEntry = { dev: view.getBigUint64(off, true), name };
    const tail = align8(nameEnd);
    if (end - tail >= TAIL_SIZE) {
      entry.event_nr = view.getUint32(tail, true);
      entry.flags = view.getUint32(tail + 4, true);
      if (entry.flags & DM_NAME_LIST_FLAG_HAS_UUID) {
        entry.uuid = readCString(payload, tail + TAIL_SIZE, end, STRUCT, 'uuid');
      }
    }
    entries.push(entry);
    if (next === 0) return entries;
    if (next + DM_NAME_LIST_NAME_OFFSET > payload.length - off) {
      throw new DecodeError(STRUCT, off + 8, `next ${next} leaves no room for another record`);
    }
    off += next; // next >= nameEnd - off > 0: the walk always advances, so it ends.
  }
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
    const tail = align8(DM_NAME_LIST_NAME_OFFSET + name.length + 1);
    let size = tail;
    if (opts.withTail) size += TAIL_SIZE;
    if (uuid) size += align8(uuid.length + 1);
    return { e, name, flags, eventNr, uuid, tail, size };
  });
  const out = new Uint8Array(parts.reduce((s, p) => s + p.size, 0));
  const view = viewOf(out);
  let off = 0;
  parts.forEach((p, i) => {
    view.setBigUint64(off, p.e.dev, true);
    view.setUint32(off + 8, i === parts.length - 1 ? 0 : p.size, true);
    out.set(p.name, off + DM_NAME_LIST_NAME_OFFSET);
    if (opts.withTail) {
      view.setUint32(off + p.tail, p.eventNr, true);
      view.setUint32(off + p.tail + 4, p.flags, true);
      if (p.uuid) out.set(p.uuid, off + p.tail + TAIL_SIZE);
    }
    off += p.size;
  });
  return out;
}
