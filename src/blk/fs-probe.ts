// The file system on a block device, from its superblock (Docker's ProbeFsType, blkid's TYPE): a
// pread of the first bytes, decoded by structs/fs-superblock.ts.
import { closeSync, openSync, readSync } from 'node:fs';
import { decodeFsSuperblock, FS_PROBE_BYTES, type FsSuperblock, type FsSuperblockType } from '../structs/fs-superblock.js';

export type { FsSuperblock, FsSuperblockType } from '../structs/fs-superblock.js';

/** No superblock we know (ext2/3/4, xfs) at the start of the device: unformatted, or another kind. */
export class UnknownFsError extends Error {
  override readonly name = 'UnknownFsError';
  /** As mount(2) would not know the medium: EMEDIUMTYPE ("Wrong medium type"). */
  readonly code = 'EMEDIUMTYPE';
  constructor(readonly device: string) {
    super(`${device}: no ext2, ext3, ext4 or xfs superblock: unknown file system type`);
  }
}

/** The device's superblock, or null when it holds none we know. Read-only; opens and closes the path. */
export function readFsSuperblock(device: string): FsSuperblock | null {
  const fd = openSync(device, 'r');
  try {
    const buf = Buffer.alloc(FS_PROBE_BYTES);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, done);
      if (n === 0) break; // a device smaller than the probe: decode what there is
      done += n;
    }
    return decodeFsSuperblock(buf.subarray(0, done));
  } finally {
    closeSync(fd);
  }
}

/** The file system type on `device` ('ext2', 'ext3', 'ext4' or 'xfs'), as mount(2) takes it. Throws UnknownFsError. */
export function probeFsType(device: string): FsSuperblockType {
  const sb = readFsSuperblock(device);
  if (sb === null) throw new UnknownFsError(device);
  return sb.type;
}
