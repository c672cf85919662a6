// struct dm_target_versions (dm-ioctl.h): next u32 (from the start of this record; 0 ends the
// list), version u32[3], NUL-terminated name. The reply of DM_LIST_VERSIONS and GET_TARGET_VERSION.
import { DecodeError, EncodeError } from './errors.js';
import { cstringBytes, readCString } from './cstring.js';
import { DM_NAME_LEN, DM_TARGET_VERSIONS_OFFSETS as REC } from './dm-abi.js';
import { align8, checkU32, viewOf } from './bytes.js';

export { DM_TARGET_VERSIONS_OFFSETS } from './dm-abi.js';

const STRUCT = 'dm_target_versions';

export interface DmTargetVersion {
  name: string;
  version: [number, number, number];
}

export function decodeTargetVersions(payload: Uint8Array): DmTargetVersion[] {
  if (payload.length === 0) return [];
  const view = viewOf(payload);
  const list: DmTargetVersion[] = [];
  let off = 0;
  for (;;) {
    if (off + REC.name > payload.length) throw new DecodeError(STRUCT, off, `record runs past the ${payload.length}-byte payload`);
    const next = view.getUint32(off + REC.next, true);
    const end = next === 0 ? payload.length : off + next;
    if (end > payload.length) throw new DecodeError(STRUCT, off, `next ${next} points outside the ${payload.length}-byte payload`);
    const name = readCString(payload, off + REC.name, end, STRUCT, 'name');
    const version = off + REC.version;
    list.push({
      name,
      version: [view.getUint32(version, true), view.getUint32(version + 4, true), view.getUint32(version + 8, true)],
    });
    if (next === 0) return list;
    if (next + REC.name > payload.length - off) throw new DecodeError(STRUCT, off, `next ${next} leaves no room for another record`);
    off += next; // next > the name's NUL: always advances.
  }
}

/**
 * The kernel's reply layout (__list_versions): records 8-aligned, the last with next 0, and the
 * payload as long as the kernel's estimate, sum(16 + strlen(name) + 1 + 7), zero-filled.
 */
export function encodeTargetVersions(list: readonly DmTargetVersion[]): Uint8Array {
  const names = list.map((t, i) => {
    const name = cstringBytes(STRUCT, `[${i}].name`, t.name, DM_NAME_LEN);
    if (name.length === 0) throw new EncodeError(STRUCT, `[${i}].name`, 'is empty');
    for (const [j, v] of t.version.entries()) checkU32(STRUCT, `[${i}].version[${j}]`, v);
    return name;
  });
  const out = new Uint8Array(names.reduce((s, n) => s + REC.name + n.length + 1 + 7, 0));
  const view = viewOf(out);
  let off = 0;
  list.forEach((t, i) => {
    const name = names[i]!;
    const size = align8(REC.name + name.length + 1);
    view.setUint32(off + REC.next, i === list.length - 1 ? 0 : size, true);
    for (const [j, v] of t.version.entries()) view.setUint32(off + REC.version + 4 * j, v, true);
    out.set(name, off + REC.name);
    off += size;
  });
  return out;
}

/**
 * The GET_TARGET_VERSION request payload. The kernel (get_target_version) reads the target's name
 * from dm_ioctl.name, not from the payload: libdevmapper sends the name there and an empty
 * payload (dmsetup target-version). So this checks the name fits that field and returns no bytes;
 * put `name` in the header (see targetVersionRequest).
 */
export function encodeTargetVersionRequest(name: string): Uint8Array {
  targetVersionRequest(name);
  return new Uint8Array(0);
}

/** What a GET_TARGET_VERSION request carries: the header's name and an empty payload. */
export function targetVersionRequest(name: string): { name: string; payload: Uint8Array } {
  const bytes = cstringBytes('dm_ioctl', 'name', name, DM_NAME_LEN);
  if (bytes.length === 0) throw new EncodeError('dm_ioctl', 'name', 'target name is empty');
  return { name, payload: new Uint8Array(0) };
}
