// Payloads that are one NUL-terminated string at data_start: DM_DEV_RENAME's new name (or new
// uuid with DM_UUID_FLAG), DM_DEV_SET_GEOMETRY's "cylinders heads sectors start", and the output
// a target writes into a DM_TARGET_MSG reply (DM_DATA_OUT_FLAG).
import { EncodeError } from './errors.js';
import { cstringBytes, readCString } from './cstring.js';

/**
 * `value` + NUL. `maxBytes` is the field size counting the NUL, as the kernel's limits are
 * written (DM_NAME_LEN 128 for a new name, DM_UUID_LEN 129 for a uuid).
 */
export function encodeStringPayload(struct: string, field: string, value: string, maxBytes?: number): Uint8Array {
  const bytes = cstringBytes(struct, field, value, maxBytes ?? Number.MAX_SAFE_INTEGER);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export function decodeStringPayload(payload: Uint8Array, struct: string): string {
  return readCString(payload, 0, payload.length, struct, 'string');
}

export interface DmGeometry {
  cylinders: number;
  heads: number;
  sectors: number;
  start: number;
}

/**
 * The SET_GEOMETRY string, with the kernel's bounds (dev_set_geometry: cylinders <= 65535,
 * heads and sectors <= 255, as struct hd_geometry holds them).
 */
export function formatGeometry(g: DmGeometry): string {
  const check = (field: keyof DmGeometry, max: number): number => {
    const v = g[field];
    if (!Number.isSafeInteger(v) || v < 0 || v > max) throw new EncodeError('dm_geometry', field, `${v} outside 0..${max}`);
    return v;
  };
  return `${check('cylinders', 65535)} ${check('heads', 255)} ${check('sectors', 255)} ${check('start', Number.MAX_SAFE_INTEGER)}`;
}
