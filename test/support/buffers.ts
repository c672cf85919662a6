// Hand-made and malformed kernel buffers, built by the kernel's field names: a dm_ioctl header, a
// target spec list, a name list, or any struct of the project with some fields overwritten. Unlike
// the encoders in src/structs, nothing here checks a value: a name without its NUL, a `next` that
// points nowhere or a count larger than the buffer is what a decoder test wants to feed in.
import {
  DM_IOCTL_OFFSETS,
  DM_IOCTL_SIZE,
  DM_MAX_TYPE_NAME,
  DM_NAME_LEN,
  DM_NAME_LIST_OFFSETS,
  DM_NAME_LIST_TAIL_OFFSETS,
  DM_TARGET_DEPS_OFFSETS,
  DM_TARGET_MSG_OFFSETS,
  DM_TARGET_SPEC_OFFSETS,
  DM_TARGET_SPEC_SIZE,
  DM_TARGET_VERSIONS_OFFSETS,
  DM_UUID_LEN,
  LOOP_CONFIG_OFFSETS,
  LOOP_INFO64_OFFSETS,
  LO_KEY_SIZE,
  LO_NAME_SIZE,
  align8,
} from '../../src/structs/index.js';

/**
 * A field's value: a number is written as a __u32 (a negative one as its two's complement, as an
 * __s32 holds it), a bigint as a __u64, a number array as consecutive __u32s (dm_ioctl.version),
 * a string as its UTF-8 bytes with no NUL added (a char[N] field is zeroed first, so a string
 * shorter than N ends up NUL-terminated and one of N bytes does not).
 */
export type FieldValue = number | bigint | string | readonly number[];

/** Each struct's offsets (src/structs/dm-abi.ts, loop.ts) and the sizes of its char[N] fields. */
export const STRUCTS = {
  dm_ioctl: { offsets: DM_IOCTL_OFFSETS, chars: { name: DM_NAME_LEN, uuid: DM_UUID_LEN } },
  dm_target_spec: { offsets: DM_TARGET_SPEC_OFFSETS, chars: { target_type: DM_MAX_TYPE_NAME } },
  dm_name_list: { offsets: DM_NAME_LIST_OFFSETS, chars: {} },
  dm_name_list_tail: { offsets: DM_NAME_LIST_TAIL_OFFSETS, chars: {} },
  dm_target_versions: { offsets: DM_TARGET_VERSIONS_OFFSETS, chars: {} },
  dm_target_deps: { offsets: DM_TARGET_DEPS_OFFSETS, chars: {} },
  dm_target_msg: { offsets: DM_TARGET_MSG_OFFSETS, chars: {} },
  loop_info64: {
    offsets: LOOP_INFO64_OFFSETS,
    chars: { lo_file_name: LO_NAME_SIZE, lo_crypt_name: LO_NAME_SIZE, lo_encrypt_key: LO_KEY_SIZE },
  },
  loop_config: { offsets: LOOP_CONFIG_OFFSETS, chars: {} },
} as const;
export type StructName = keyof typeof STRUCTS;
export type Fields<S extends StructName> = Partial<Record<keyof (typeof STRUCTS)[S]['offsets'], FieldValue>>;

/** Writes `fields` of the struct that starts at byte `at` of `buf`, in place. */
export function writeFields<S extends StructName>(buf: Uint8Array, struct: S, fields: Fields<S>, at = 0): void {
  const { offsets, chars } = STRUCTS[struct] as { offsets: Record<string, number>; chars: Record<string, number> };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const [field, value] of Object.entries(fields) as [string, FieldValue | undefined][]) {
    const offset = offsets[field];
    if (offset === undefined) throw new Error(`${struct} has no field ${field}`);
    if (value === undefined) continue;
    const off = at + offset;
    if (typeof value === 'number') view.setUint32(off, value >>> 0, true);
    else if (typeof value === 'bigint') view.setBigUint64(off, value, true);
    else if (typeof value === 'string') {
      const bytes = Buffer.from(value, 'utf8');
      const size = chars[field];
      if (size !== undefined) buf.fill(0, off, off + size);
      buf.set(bytes, off);
    } else for (const [i, v] of value.entries()) view.setUint32(off + 4 * i, v >>> 0, true);
  }
}

/** A copy of `buf` with `fields` of the struct at byte `at` overwritten. */
export function patched<S extends StructName>(buf: Uint8Array, struct: S, fields: Fields<S>, at = 0): Buffer {
  const copy = Buffer.from(buf);
  writeFields(copy, struct, fields, at);
  return copy;
}

/**
 * A dm ioctl buffer: a dm_ioctl header from `fields` (version 4.0.0, data_start 312 and data_size
 * = the buffer's length unless given; everything else zero), then `payload` at 312, in `size` bytes
 * (at least header + payload).
 */
export function dmIoctlBuffer(fields: Fields<'dm_ioctl'>, payload: Uint8Array = new Uint8Array(0), size = 0): Buffer {
  const buf = Buffer.alloc(Math.max(size, DM_IOCTL_SIZE + payload.length));
  writeFields(buf, 'dm_ioctl', { version: [4, 0, 0], data_start: DM_IOCTL_SIZE, data_size: buf.length, ...fields });
  buf.set(payload, DM_IOCTL_SIZE);
  return buf;
}

/** One dm_target_spec by field, with its params; `next` computed unless given. */
export interface SpecFields {
  sector_start?: bigint;
  length?: bigint;
  status?: number;
  next?: number;
  target_type?: string;
  params?: string;
}

/**
 * A target spec list: each spec 8-aligned after the NUL of its params, `next` relative to the spec
 * (TABLE_LOAD) or from the start of the list (TABLE_STATUS, DEV_WAIT) unless a spec gives its own.
 */
export function targetSpecList(specs: readonly SpecFields[], next: 'relative' | 'from-start'): Buffer {
  const sizes = specs.map((s) => align8(DM_TARGET_SPEC_SIZE + Buffer.byteLength(s.params ?? '', 'utf8') + 1));
  const buf = Buffer.alloc(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  specs.forEach(({ params, ...fields }, i) => {
    const size = sizes[i]!;
    writeFields(buf, 'dm_target_spec', { next: next === 'relative' ? size : at + size, ...fields }, at);
    buf.write(params ?? '', at + DM_TARGET_SPEC_SIZE, 'utf8');
    at += size;
  });
  return buf;
}

/** One dm_name_list record by field; event_nr, flags and uuid go in the tail after the name. */
export interface NameListFields {
  dev?: bigint;
  next?: number;
  name?: string;
  event_nr?: number;
  flags?: number;
  uuid?: string;
}

/**
 * A LIST_DEVICES payload: records 8-aligned, `next` the record's size and 0 on the last unless
 * given; a record has the event_nr/flags tail when it gives event_nr or flags.
 */
export function nameList(records: readonly NameListFields[]): Buffer {
  const layout = records.map((r) => {
    const tail = align8(DM_NAME_LIST_OFFSETS.name + Buffer.byteLength(r.name ?? '', 'utf8') + 1);
    const hasTail = r.event_nr !== undefined || r.flags !== undefined;
    const uuid = r.uuid === undefined ? 0 : align8(Buffer.byteLength(r.uuid, 'utf8') + 1);
    return { tail, hasTail, size: tail + (hasTail ? DM_NAME_LIST_TAIL_OFFSETS.uuid + uuid : 0) };
  });
  const buf = Buffer.alloc(layout.reduce((a, l) => a + l.size, 0));
  let at = 0;
  records.forEach(({ event_nr, flags, uuid, ...fields }, i) => {
    const { tail, hasTail, size } = layout[i]!;
    writeFields(buf, 'dm_name_list', { next: i === records.length - 1 ? 0 : size, ...fields }, at);
    if (hasTail) writeFields(buf, 'dm_name_list_tail', { event_nr, flags, uuid }, at + tail);
    at += size;
  });
  return buf;
}
