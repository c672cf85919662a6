// Fixed-size and NUL-terminated C strings inside kernel structs.
import { DecodeError, EncodeError } from './errors.js';

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

/** Bytes of `value` as UTF-8, checked to fit a `char field[fieldSize]` with its NUL. */
export function cstringBytes(struct: string, field: string, value: string, fieldSize: number): Uint8Array {
  const bytes = utf8.encode(value);
  if (bytes.length >= fieldSize) {
    throw new EncodeError(struct, field, `${bytes.length} bytes does not fit ${fieldSize - 1} bytes and a NUL`);
  }
  if (bytes.includes(0)) throw new EncodeError(struct, field, 'holds a NUL byte');
  return bytes;
}

/** Writes `value` into `buf` at `offset` as a NUL-terminated string in a field of `fieldSize` bytes. */
export function writeCString(buf: Uint8Array, offset: number, struct: string, field: string, value: string, fieldSize: number): void {
  if (Buffer.isBuffer(buf)) {
    // Buffer.write encodes in place without an intermediate array (the dm_ioctl hot path).
    const length = Buffer.byteLength(value, 'utf8');
    if (length >= fieldSize) {
      throw new EncodeError(struct, field, `${length} bytes does not fit ${fieldSize - 1} bytes and a NUL`);
    }
    if (value.includes('\0')) throw new EncodeError(struct, field, 'holds a NUL byte');
    buf.write(value, offset, length, 'utf8');
    buf.fill(0, offset + length, offset + fieldSize);
    return;
  }
  const bytes = cstringBytes(struct, field, value, fieldSize);
  buf.set(bytes, offset);
  buf.fill(0, offset + bytes.length, offset + fieldSize);
}

/**
 * Reads a NUL-terminated string that starts at `offset` and must end before `limit`
 * (exclusive). A missing NUL is a DecodeError naming the struct and the offset.
 */
export function readCString(buf: Uint8Array, offset: number, limit: number, struct: string, field: string): string {
  const end = Math.min(limit, buf.length);
  if (offset < 0 || offset > end) throw new DecodeError(struct, offset, `${field} starts outside the buffer`);
  const nul = buf.indexOf(0, offset);
  if (nul < 0 || nul >= end) throw new DecodeError(struct, offset, `${field} has no NUL before byte ${end}`);
  if (Buffer.isBuffer(buf)) return buf.toString('utf8', offset, nul);
  return utf8Decoder.decode(buf.subarray(offset, nul));
}
