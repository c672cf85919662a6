// A new pool's metadata device (dm.metadatadev) is never written to before dm-thin formats it: it
// must hold a pool's superblock already (the pool is adopted) or have its first metadata block all
// zero, which dm-thin reads as "no pool yet, format me" (thin-provisioning.rst: "zero the first
// 4k"). Anything else may be a file system or another program's data on a mistyped device, so the
// user zeroes it, as Docker's documentation leaves it to them. Nothing is written either way.
import { closeSync, openSync, readSync } from 'node:fs';
import { THIN_METADATA_BLOCK_SIZE as BLOCK_BYTES, THIN_SUPERBLOCK_MAGIC } from '../structs/thin-metadata.js';

/** thin_disk_superblock.magic (after csum, flags, blocknr, uuid[16]); the superblock is block 0. */
export const SUPERBLOCK_MAGIC_OFFSET = 32;

/** What block 0 of a metadata device holds. */
export type MetadataHeader = 'superblock' | 'zeroed' | 'other';

export function metadataHeaderOf(path: string): MetadataHeader {
  const buf = Buffer.alloc(BLOCK_BYTES);
  const fd = openSync(path, 'r');
  let n = 0;
  try {
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
  } finally {
    closeSync(fd);
  }
  if (n >= SUPERBLOCK_MAGIC_OFFSET + 8 && buf.readBigUInt64LE(SUPERBLOCK_MAGIC_OFFSET) === THIN_SUPERBLOCK_MAGIC) return 'superblock';
  return n === buf.length && buf.every((b) => b === 0) ? 'zeroed' : 'other';
}

/** The command that zeroes a metadata device's first block, for the user to run. */
export function zeroCommand(path: string): string {
  return `dd if=/dev/zero of=${path} bs=${BLOCK_BYTES} count=1`;
}

/** A new pool's dm.metadatadev holds neither a thin superblock nor a zeroed first 4 KiB: refused, untouched. */
export class MetadataDeviceNotZeroedError extends Error {
  override readonly name = 'MetadataDeviceNotZeroedError';
  readonly code = 'EINVAL';
  /** What to run once the device is known to be the right one. */
  readonly command: string;
  constructor(readonly path: string) {
    const command = zeroCommand(path);
    super(
      `dm.metadatadev ${path}: its first ${BLOCK_BYTES} bytes are neither zero nor a thin pool's superblock; nothing was written. ` +
        `If it is the right device and holds nothing you need, zero them: ${command}`,
    );
    this.command = command;
  }
}

/** A new pool's metadata device: 'adopt' (a pool's superblock) or 'fresh' (zeroed); else refused. */
export function checkNewMetadataDevice(path: string): 'adopt' | 'fresh' {
  const header = metadataHeaderOf(path);
  if (header === 'other') throw new MetadataDeviceNotZeroedError(path);
  return header === 'superblock' ? 'adopt' : 'fresh';
}
