import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  SECTOR_SHIFT,
  SECTOR_SIZE,
  SectorAlignmentError,
  bytes,
  bytesToSectors,
  sectors,
  sectorsToBytes,
  u64,
} from '../../src/structs/index.js';

const U64_MAX = 2n ** 64n - 1n;

describe('sectors and bytes', () => {
  it("are the kernel's 512-byte sectors", () => {
    expect(SECTOR_SIZE).toBe(512);
    expect(1 << SECTOR_SHIFT).toBe(SECTOR_SIZE);
  });

  it('take integers in 0..2^64-1, as bigint or safe number', () => {
    expect(sectors(0)).toBe(0n);
    expect(sectors(U64_MAX)).toBe(U64_MAX);
    expect(bytes(4096)).toBe(4096n);
    expect(u64(7n, 'transaction id')).toBe(7n);
    for (const bad of [-1, -1n, 1.5, 2 ** 53, U64_MAX + 1n, Number.NaN]) {
      expect(() => sectors(bad), String(bad)).toThrow(InvalidArgumentError);
      expect(() => bytes(bad), String(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => u64(-1n, 'transaction id')).toThrow(/^invalid transaction id -1n: must not be negative$/);
    expect(() => bytes('1' as unknown as bigint)).toThrow(/must be a bigint or an integer/);
  });

  it('convert at SECTOR_SHIFT', () => {
    expect(sectorsToBytes(sectors(8))).toBe(4096n);
    expect(bytesToSectors(bytes(4096))).toBe(8n);
    expect(bytesToSectors(bytes(0))).toBe(0n);
    expect(bytesToSectors(bytes(U64_MAX - 511n))).toBe(U64_MAX >> 9n);
    expect(sectorsToBytes(sectors(U64_MAX >> 9n))).toBe((U64_MAX >> 9n) << 9n);
  });

  it('refuse a byte count that is not whole sectors, and bytes past 64 bits', () => {
    const err = (() => {
      try {
        bytesToSectors(bytes(4097), 'data size');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(SectorAlignmentError);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as SectorAlignmentError).code).toBe('EINVAL');
    expect((err as SectorAlignmentError).name).toBe('SectorAlignmentError');
    expect((err as Error).message).toBe('invalid data size 4097n: is not a multiple of 512 bytes (one sector)');
    expect(() => sectorsToBytes(sectors(U64_MAX))).toThrow(/does not fit 64 bits/);
  });
});
