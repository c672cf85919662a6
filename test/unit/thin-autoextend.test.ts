// lvm's auto-extend arithmetic (lvm.conf(5) thin_pool_autoextend_threshold / _percent) as
// src/thin/autoextend.ts applies it: when to extend, by how much, rounded to the unit, bounded by
// the room on the file system and the device's maximum. Sizes are worked out by hand below.
import { describe, expect, test } from 'vitest';
import { hasArmPoll } from '../../src/dm/events.js';
import { bytes } from '../../src/structs/units.js';
import { AUTOEXTEND_DEFAULTS, autoextendPolicy, extendDecision, overThreshold, type ExtendInput } from '../../src/thin/autoextend.js';
import { OptionError } from '../../src/thin/errors.js';
import { THIN_METADATA_MAX_BYTES } from '../../src/thin/resize.js';

const MiB = 1024n * 1024n;
const KiB64 = 64n * 1024n;
const HUGE = 1n << 60n;

function input(usedMiB: bigint, totalMiB: bigint, extra: Partial<ExtendInput> = {}): ExtendInput {
  return { usedBytes: bytes(usedMiB * MiB), totalBytes: bytes(totalMiB * MiB), unitBytes: bytes(KiB64), roomBytes: HUGE, ...extra };
}

describe('autoextendPolicy', () => {
  test("lvm's defaults: threshold 100 (off), 20 %", () => {
    expect(AUTOEXTEND_DEFAULTS).toEqual({ threshold: 100, percent: 20 });
    expect(extendDecision(AUTOEXTEND_DEFAULTS, input(64n, 64n, { force: true }))).toEqual({ action: 'none' });
  });

  test('a threshold below 50 counts as 50', () => {
    expect(autoextendPolicy(10, 20)).toEqual({ threshold: 50, percent: 20 });
    expect(autoextendPolicy(70, 20)).toEqual({ threshold: 70, percent: 20 });
  });

  test('bad values are refused with EINVAL', () => {
    for (const [t, p] of [
      [101, 20],
      [-1, 20],
      [70.5, 20],
      [70, 0],
      [70, -5],
      [70, 1.5],
    ] as const) {
      expect(() => autoextendPolicy(t, p)).toThrow(OptionError);
    }
    expect(autoextendPolicy(100, 0)).toEqual({ threshold: 100, percent: 0 });
  });
});

describe('extendDecision', () => {
  const p = autoextendPolicy(70, 20);

  test('use must exceed the threshold, not reach it', () => {
    expect(overThreshold(70n, 100n, 70)).toBe(false);
    expect(overThreshold(71n, 100n, 70)).toBe(true);
    // 70 % of 100 MiB exactly: no extension; one block more: extension.
    expect(extendDecision(p, input(70n, 100n))).toEqual({ action: 'none' });
    expect(extendDecision(p, { ...input(70n, 100n), usedBytes: bytes(70n * MiB + KiB64) }).action).toBe('extend');
  });

  test('by percent of the current size, rounded up to the block', () => {
    // 100 MiB + 20 % = 120 MiB, a multiple of 64 KiB already.
    expect(extendDecision(p, input(80n, 100n))).toEqual({
      action: 'extend',
      sizeBytes: 120n * MiB,
      wantedBytes: 120n * MiB,
      limitedBy: null,
    });
    // 10 MiB + 64 KiB (10304 KiB), 75 % used: + 20 % = 12364.8 KiB -> up to 12416 KiB (194 blocks) = 12 MiB + 128 KiB.
    const total = 10n * MiB + KiB64;
    const d = extendDecision(p, {
      usedBytes: bytes((total * 3n) / 4n),
      totalBytes: bytes(total),
      unitBytes: bytes(KiB64),
      roomBytes: HUGE,
    });
    expect(d).toMatchObject({ action: 'extend', sizeBytes: 12n * MiB + 2n * KiB64 });
  });

  test('at least back to the threshold when use is far past it', () => {
    // 99 of 100 MiB at threshold 70: 20 % gives 120 MiB (82.5 % used); back to 70 % needs 99/0.7 = 141.43 MiB -> 141.4375 MiB (64 KiB units).
    const d = extendDecision(p, input(99n, 100n));
    expect(d.action).toBe('extend');
    const size = (d as { sizeBytes: bigint }).sizeBytes;
    expect(size % KiB64).toBe(0n);
    expect(size * 70n).toBeGreaterThanOrEqual(99n * MiB * 100n);
    expect((size - KiB64) * 70n).toBeLessThan(99n * MiB * 100n);
  });

  test('out of data space: extends even below the threshold (force)', () => {
    expect(extendDecision(p, input(10n, 100n))).toEqual({ action: 'none' });
    expect(extendDecision(p, input(10n, 100n, { force: true }))).toMatchObject({ action: 'extend', sizeBytes: 120n * MiB });
  });

  test('bounded by the room on the file system, in whole units', () => {
    // Wants 20 MiB more, 5 MiB + 1000 bytes free: grows by 5 MiB.
    expect(extendDecision(p, input(80n, 100n, { roomBytes: 5n * MiB + 1000n }))).toEqual({
      action: 'extend',
      sizeBytes: 105n * MiB,
      wantedBytes: 120n * MiB,
      limitedBy: 'room',
    });
    // Less than one block free (or a negative room: holes the sparse files may still fill): no room.
    expect(extendDecision(p, input(80n, 100n, { roomBytes: KiB64 - 1n }))).toEqual({
      action: 'no-room',
      wantedBytes: 120n * MiB,
      limitedBy: 'room',
    });
    expect(extendDecision(p, input(80n, 100n, { roomBytes: -50n * MiB }))).toMatchObject({ action: 'no-room' });
  });

  test("metadata: 4 KiB units, capped at the kernel's maximum", () => {
    const unit = bytes(4096n);
    // THIN_METADATA_MAX_SECTORS: 255 bitmaps of 16320 blocks of 4 KiB.
    expect(THIN_METADATA_MAX_BYTES).toBe(255n * 16320n * 4096n);
    const total = THIN_METADATA_MAX_BYTES - 4096n * 10n;
    const d = extendDecision(p, {
      usedBytes: bytes(total),
      totalBytes: bytes(total),
      unitBytes: unit,
      roomBytes: HUGE,
      maxBytes: THIN_METADATA_MAX_BYTES,
    });
    expect(d).toMatchObject({ action: 'extend', sizeBytes: THIN_METADATA_MAX_BYTES, limitedBy: 'max' });
    expect(
      extendDecision(p, {
        usedBytes: THIN_METADATA_MAX_BYTES,
        totalBytes: THIN_METADATA_MAX_BYTES,
        unitBytes: unit,
        roomBytes: HUGE,
        maxBytes: THIN_METADATA_MAX_BYTES,
      }),
    ).toMatchObject({ action: 'no-room', limitedBy: 'max' });
  });
});

describe('hasArmPoll', () => {
  test('DM_DEV_ARM_POLL came with interface 4.36.0', () => {
    expect(hasArmPoll([4, 36, 0])).toBe(true);
    expect(hasArmPoll([4, 47, 0])).toBe(true);
    expect(hasArmPoll([4, 35, 9])).toBe(false);
    expect(hasArmPoll([3, 99, 0])).toBe(false);
    expect(hasArmPoll([5, 0, 0])).toBe(true);
  });
});
