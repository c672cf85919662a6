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
 * Buffer's own UTF-8 slice (what toString('utf8', start, end) calls after checking its arguments):
 * on 10,000 short names the checks cost as much as the decoding.
 */
type Utf8Slice = (this: Buffer, start: number, end: number) => string;
const utf8Slice: Utf8Slice =
  (Buffer.prototype as Buffer & { utf8Slice?: Utf8Slice }).utf8Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('utf8', start, end);
  };

/**
 * Per record in the index: where it starts and where its name's NUL is. It ends where the next one
 * starts (record + next), the last one at the end of the payload.
 */
const AT_RECORD = 0;
const AT_NUL = 1;
const AT_STRIDE = 2;
/** Records the index first has room for; it doubles from there (a list is often short). */
const AT_INITIAL = 256;

// The offsets as module constants: the walk over 10,000 records reads them in its inner loop.
const DEV = REC.dev;
const NEXT = REC.next;
const NAME = REC.name;
const T_EVENT_NR = TAIL.event_nr;
const T_FLAGS = TAIL.flags;
const T_UUID = TAIL.uuid;
const TAIL_SIZE = DM_NAME_LIST_TAIL_SIZE;
const HAS_UUID = DM_NAME_LIST_FLAG_HAS_UUID;

const asBuffer = (p: Uint8Array): Buffer => (Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength));

/** The last list's names and their bytes, for DmNameListView.names(cache); start with newNameListCache(). */
export interface DmNameListCache {
  /** The last reply's payload. */
  bytes: Buffer;
  /** Its index (DmNameListView's: per record, its offset and its name's NUL). */
  at: Int32Array;
  /** An index for DmNameListView.of to fill next (the largest it has grown to). */
  scratch: Int32Array;
  names: string[];
  length: number;
}

export function newNameListCache(): DmNameListCache {
  return { bytes: Buffer.alloc(0), at: new Int32Array(0), scratch: new Int32Array(0), names: [], length: 0 };
}

/**
 * A DM_LIST_DEVICES payload (data_start..data_size) indexed in one walk that checks every bound (a
 * DecodeError names the offset of a lying `next`, a name or uuid without its NUL); after that each
 * record's fields are read on demand, so a caller that wants only names, or one name, makes no
 * other object. Reads the bytes it was given: the caller keeps them unchanged while it uses this
 * (dm's listView() copies the reply first; listNames() reads the names at once). With no devices
 * the kernel sets data_size to data_start (an empty payload) and zeroes `dev` at data_start: both
 * index no record.
 */
export class DmNameListView {
  private constructor(
    private readonly b: Buffer,
    private readonly at: Int32Array,
    /** How many records. */
    readonly length: number,
  ) {}

  /**
   * `scratch`: an index to fill when it is large enough (a cache's, so that a list of 10,000 devices
   * allocates no index); the view then reads it, and is valid only until that scratch is used again.
   */
  static of(payload: Uint8Array, scratch?: Int32Array): DmNameListView {
    const b = asBuffer(payload);
    if (b.length === 0) return new DmNameListView(b, new Int32Array(0), 0);
    if (b.length < 8) throw new DecodeError(STRUCT, 0, `${b.length} bytes cannot hold a dev`);
    if (b.readUInt32LE(0) === 0 && b.readUInt32LE(4) === 0) return new DmNameListView(b, new Int32Array(0), 0);
    let at = scratch && scratch.length >= AT_STRIDE * AT_INITIAL ? scratch : new Int32Array(AT_STRIDE * AT_INITIAL);
    let n = 0;
    let off = 0;
    for (;;) {
      if (off + NAME > b.length) {
        throw new DecodeError(STRUCT, off, `record runs past the ${b.length}-byte payload`);
      }
      const next = b.readUInt32LE(off + NEXT);
      const end = next === 0 ? b.length : off + next;
      if (end > b.length) {
        throw new DecodeError(STRUCT, off + NEXT, `next ${next} points outside the ${b.length}-byte payload`);
      }
      const nameOff = off + NAME;
      let nul = nameOff;
      while (nul < end && b[nul] !== 0) nul++;
      if (nul >= end) throw new DecodeError(STRUCT, nameOff, `name has no NUL before byte ${end}`);
      const tail = (nul + 1 + 7) & ~7;
      if (end - tail >= TAIL_SIZE && b.readUInt32LE(tail + T_FLAGS) & HAS_UUID) {
        readCString(b, tail + T_UUID, end, STRUCT, 'uuid');
      }
      if (AT_STRIDE * (n + 1) > at.length) {
        const grown = new Int32Array(at.length * 2);
        grown.set(at);
        at = grown;
      }
      const k = AT_STRIDE * n++;
      at[k + AT_RECORD] = off;
      at[k + AT_NUL] = nul;
      if (next === 0) break;
      if (next + NAME > b.length - off) {
        throw new DecodeError(STRUCT, off + NEXT, `next ${next} leaves no room for another record`);
      }
      off += next; // next >= nul + 1 - off > 0: the walk always advances, so it ends.
    }
    return new DmNameListView(b, at, n);
  }

  private check(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`record ${i} of ${this.length}`);
    return AT_STRIDE * i;
  }

  /** Record i's name, decoded as UTF-8 (dm names are bytes; the kernel's are what was created). */
  name(i: number): string {
    const k = this.check(i);
    return utf8Slice.call(this.b, (this.at[k + AT_RECORD] as number) + NAME, this.at[k + AT_NUL] as number);
  }

  /**
   * Every name, in the kernel's order. With `cache` (kept by the caller between lists of one control
   * node): a record whose name has the same bytes at the same position as in the last list gives the
   * same string, so that listing an unchanged set of devices again decodes and allocates no name.
   */
  names(cache?: DmNameListCache): string[] {
    const { b, at, length } = this;
    const out = new Array<string>(length);
    if (cache === undefined) {
      for (let i = 0, k = 0; i < length; i++, k += AT_STRIDE) {
        out[i] = utf8Slice.call(b, (at[k + AT_RECORD] as number) + NAME, at[k + AT_NUL] as number);
      }
      return out;
    }
    const { bytes: pb, at: pat, names: pn } = cache;
    const same = Math.min(length, cache.length);
    for (let i = 0, k = 0; i < length; i++, k += AT_STRIDE) {
      const start = (at[k + AT_RECORD] as number) + NAME;
      const nul = at[k + AT_NUL] as number;
      let name: string | undefined;
      if (i < same) {
        const pstart = (pat[k + AT_RECORD] as number) + NAME;
        if ((pat[k + AT_NUL] as number) - pstart === nul - start) {
          let j = 0;
          while (start + j < nul && b[start + j] === pb[pstart + j]) j++;
          if (start + j === nul) name = pn[i];
        }
      }
      if (name === undefined) name = utf8Slice.call(b, start, nul);
      out[i] = name;
      pn[i] = name;
    }
    // Keep this reply's bytes and index for the next list (two copies, no allocation once grown).
    if (cache.bytes.length < b.length) cache.bytes = Buffer.allocUnsafeSlow(Math.max(b.length, 2 * cache.bytes.length));
    if (cache.at.length < AT_STRIDE * length) cache.at = new Int32Array(Math.max(AT_STRIDE * length, 2 * cache.at.length));
    cache.bytes.set(b);
    cache.at.set(at.subarray(0, AT_STRIDE * length));
    if (at.length > cache.scratch.length) cache.scratch = at;
    pn.length = length;
    cache.length = length;
    return out;
  }

  /** The index of the record named `name` (compared as UTF-8 bytes, no string made), or -1. */
  indexOf(name: string): number {
    const want = Buffer.from(name, 'utf8');
    const { b, at, length } = this;
    for (let i = 0, k = 0; i < length; i++, k += AT_STRIDE) {
      const start = (at[k + AT_RECORD] as number) + NAME;
      if ((at[k + AT_NUL] as number) - start !== want.length) continue;
      let j = 0;
      while (j < want.length && b[start + j] === want[j]) j++;
      if (j === want.length) return i;
    }
    return -1;
  }

  /** The low 32 bits of record i's dev (all that huge_decode_dev reads). */
  devLow(i: number): number {
    return this.b.readUInt32LE((this.at[this.check(i) + AT_RECORD] as number) + DEV);
  }
  devHigh(i: number): number {
    return this.b.readUInt32LE((this.at[this.check(i) + AT_RECORD] as number) + DEV + 4);
  }
  dev(i: number): bigint {
    return (BigInt(this.devHigh(i)) << 32n) | BigInt(this.devLow(i));
  }

  /** Where record i's tail (event_nr, flags, uuid) starts; -1 on kernels without it. */
  private tail(i: number): number {
    const k = this.check(i);
    const tail = ((this.at[k + AT_NUL] as number) + 1 + 7) & ~7;
    const end = i + 1 < this.length ? (this.at[k + AT_STRIDE + AT_RECORD] as number) : this.b.length;
    return end - tail >= TAIL_SIZE ? tail : -1;
  }
  /** Absent (undefined) on kernels without the tail. */
  event_nr(i: number): number | undefined {
    const t = this.tail(i);
    return t < 0 ? undefined : this.b.readUInt32LE(t + T_EVENT_NR);
  }
  flags(i: number): number | undefined {
    const t = this.tail(i);
    return t < 0 ? undefined : this.b.readUInt32LE(t + T_FLAGS);
  }
  /** Only when the request carried DM_UUID_FLAG and the device has one (checked by of()). */
  uuid(i: number): string | undefined {
    const t = this.tail(i);
    if (t < 0 || !(this.b.readUInt32LE(t + T_FLAGS) & HAS_UUID)) return undefined;
    const start = t + T_UUID;
    return utf8Slice.call(this.b, start, this.b.indexOf(0, start));
  }
}

/**
 * Walks the payload record by record without building an array of bigints (see DmNameListView for
 * the checks). `visit` gets a record object that is reused: copy what it keeps.
 */
export function readNameList(payload: Uint8Array, visit: (r: DmNameListRecord) => void): void {
  const v = DmNameListView.of(payload);
  const r: DmNameListRecord = { devLow: 0, devHigh: 0, name: '', event_nr: undefined, flags: undefined, uuid: undefined };
  for (let i = 0; i < v.length; i++) {
    r.devLow = v.devLow(i);
    r.devHigh = v.devHigh(i);
    r.name = v.name(i);
    r.event_nr = v.event_nr(i);
    r.flags = v.flags(i);
    r.uuid = v.uuid(i);
    visit(r);
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
