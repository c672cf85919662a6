import { describe, expect, expectTypeOf, test } from 'vitest';
import {
  isGenericTarget,
  isLinearTarget,
  isTargetType,
  isThinPoolTarget,
  isThinTarget,
  parseTableLine,
  type LinearTarget,
  type Target,
  type ThinPoolTarget,
  type ThinTarget,
  type ZeroTarget,
} from '../../src/dm/targets.js';
import { sectors } from '../../src/structs/units.js';

const pool = parseTableLine('0 2097152 thin-pool 253:0 253:1 128 32768 1 skip_block_zeroing');
const thin = parseTableLine('0 2048 thin 253:2 7');
const linear = parseTableLine('0 2048 linear 7:0 0');
const zero = parseTableLine('0 8 zero');
const crypt = parseTableLine('0 8 crypt aes-xts-plain64 - 0 7:0 0');

describe('target type guards', () => {
  test('each guard accepts its own parsed type and nothing else', () => {
    const all = [pool, thin, linear, zero, crypt];
    expect(all.map(isThinPoolTarget)).toEqual([true, false, false, false, false]);
    expect(all.map(isThinTarget)).toEqual([false, true, false, false, false]);
    expect(all.map(isLinearTarget)).toEqual([false, false, true, false, false]);
    expect(all.map((t) => isTargetType(t, 'zero'))).toEqual([false, false, false, true, false]);
  });

  test('a generic target spelled with a typed name is neither generic nor typed', () => {
    const odd: Target = { type: 'thin-pool', startSector: sectors(0n), lengthSectors: sectors(8n), params: '253:0 253:1 128 0' };
    expect(isThinPoolTarget(odd)).toBe(false);
    expect(isGenericTarget(odd)).toBe(false);
  });

  test('the guards narrow where `t.type === ...` cannot', () => {
    const t: Target = pool;
    if (t.type === 'thin-pool') expectTypeOf(t).toEqualTypeOf<ThinPoolTarget | Extract<Target, { params: string }>>();
    if (isThinPoolTarget(t)) {
      expectTypeOf(t).toEqualTypeOf<ThinPoolTarget>();
      expect(t.dataBlockSizeSectors).toBe(128);
      expect(t.features).toEqual(['skip_block_zeroing']);
    } else expect.unreachable();
    if (isThinTarget(thin)) expect(thin.thinId).toBe(7);
    else expect.unreachable();
    if (isLinearTarget(linear)) expect(linear.device).toBe('7:0');
    else expect.unreachable();
    expectTypeOf<Parameters<typeof isTargetType>[1]>().toEqualTypeOf<'linear' | 'thin-pool' | 'thin' | 'zero' | 'error'>();
    const z: Target = zero;
    if (isTargetType(z, 'zero')) expectTypeOf(z).toEqualTypeOf<ZeroTarget>();
    expectTypeOf<Extract<ThinTarget | LinearTarget, { type: 'thin' }>>().toEqualTypeOf<ThinTarget>();
  });
});
