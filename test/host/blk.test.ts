// Block-device ioctls on a loop device: size, sector sizes, discard (punches holes in the backing
// file), buffer flush, and the checks before BLKDISCARD.
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { attachLoop } from '../../src/loop/index.js';
import { blockDeviceSizeBytes, discard, flushBuffers, logicalSectorSizeBytes, physicalSectorSizeBytes } from '../../src/blk/index.js';
import { O_CLOEXEC, O_RDONLY, SysError, sysClose, sysOpen } from '../../src/ioctl/index.js';
import { Scratch, requireHostTier } from './support.js';

requireHostTier();

const MiB = 1024 * 1024;

describe('block devices (host)', () => {
  let s: Scratch;
  beforeEach(() => {
    s = new Scratch();
  });
  afterEach(async () => {
    await s.cleanup();
  });

  it('reads size and sector sizes by path and by fd', async () => {
    const dev = await attachLoop(s.file('size.img', 6 * MiB));
    expect(blockDeviceSizeBytes(dev.path)).toBe(BigInt(6 * MiB));
    expect(logicalSectorSizeBytes(dev.path)).toBe(512);
    expect(physicalSectorSizeBytes(dev.path)).toBeGreaterThanOrEqual(512);
    const fd = sysOpen(dev.path, O_RDONLY | O_CLOEXEC);
    try {
      expect(blockDeviceSizeBytes(fd)).toBe(BigInt(6 * MiB));
      expect(logicalSectorSizeBytes(fd)).toBe(512);
    } finally {
      sysClose(fd);
    }
  });

  it('fails with a typed error on a file that is not a block device', () => {
    const file = s.file('plain.img', MiB);
    expect(() => blockDeviceSizeBytes(file)).toThrow(SysError);
    expect(() => blockDeviceSizeBytes(file)).toThrow(new RegExp(`^BLKGETSIZE64 ${file}: ENOTTY`));
  });

  it('discard of a written region gives the blocks back to the file system', async () => {
    const file = s.file('discard.img', 8 * MiB);
    const dev = await attachLoop(file);
    const data = randomBytes(2 * MiB);
    const fd = openSync(dev.path, 'r+');
    try {
      writeSync(fd, data, 0, data.length, 2 * MiB);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const written = statSync(file).blocks;
    expect(written).toBeGreaterThanOrEqual((2 * MiB) / 512);

    discard(dev.path, BigInt(2 * MiB), BigInt(MiB));
    const after = statSync(file).blocks;
    expect(written - after).toBeGreaterThanOrEqual((MiB / 512) * 0.9);
    // The other half is intact.
    const back = Buffer.alloc(MiB);
    const rfd = openSync(dev.path, 'r');
    try {
      readSync(rfd, back, 0, MiB, 3 * MiB);
    } finally {
      closeSync(rfd);
    }
    expect(back.equals(data.subarray(MiB))).toBe(true);
    flushBuffers(dev.path);
  });

  it('checks alignment to the logical sector size and the device end before BLKDISCARD', async () => {
    const dev = await attachLoop(s.file('align.img', 4 * MiB), { blockSizeBytes: 4096 });
    expect(() => discard(dev.path, 512n, 4096n)).toThrow(/not aligned to the logical sector size 4096/);
    expect(() => discard(dev.path, 0n, BigInt(8 * MiB))).toThrow(/beyond the end of the device \(4194304 bytes\)/);
    expect(() => discard(dev.path, 0n, 4096n)).not.toThrow();
  });
});
