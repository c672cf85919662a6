// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every persistent-data
// block. Slicing-by-8: eight 256-entry tables let the loop consume 8 bytes per step, which matters
// because every metadata block read is checksummed in full.

/** The reflected Castagnoli polynomial. */
export const CRC32C_POLY = 0x82f63b78;

const TABLES = ((): Uint32Array => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let s = 1; s < 8; s++) {
      c = (c >>> 8) ^ t[c & 0xff]!;
      t[s * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/**
 * The kernel's `crc32c(crc, data, len)`: the register update alone, no inversion on the way in or
 * out. `dm_bm_checksum` calls it with `~0`.
 */
export function crc32cUpdate(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const t = TABLES;
  let c = crc >>> 0;
  let i = start;
  const end8 = start + ((end - start) & ~7);
  while (i < end8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + data[i + 4]!]! ^
      t[512 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = (c >>> 8) ^ t[(c ^ data[i++]!) & 0xff]!;
  return c >>> 0;
}

/** The standard CRC-32C of `data` (crc32c("123456789") = 0xE3069283); `seed` continues a previous value. */
export function crc32c(data: Uint8Array, seed = 0): number {
  return (crc32cUpdate(~seed >>> 0, data) ^ 0xffffffff) >>> 0;
}
