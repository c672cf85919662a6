// The bench's verdicts: a target met or missed by the median of per-round ratios, and "within
// noise" when the range of the rounds crosses the target.
import { describe, expect, it } from 'vitest';
import { targetsSection } from '../../bench/report.js';
import { perRound, spread, verdict } from '../../bench/stats.js';

describe('bench figures', () => {
  it('takes ratios round by round', () => {
    expect(perRound([10, 20, 30], [5, 40, 30])).toEqual([2, 0.5, 1]);
    expect(() => perRound([1, 2], [1])).toThrow(/2 rounds against 1/);
  });

  it('gives the median and the range', () => {
    expect(spread([0.8, 1.1, 0.9, 1.0])).toEqual({ median: 0.95, min: 0.8, max: 1.1, n: 4 });
  });

  it('says met, missed, and when either holds only within noise', () => {
    const atLeast = { op: '>=', value: 0.9 } as const;
    expect(verdict(spread([0.92, 0.95, 0.97]), atLeast)).toBe('met');
    expect(verdict(spread([0.85, 0.93, 0.95]), atLeast)).toBe('met within noise');
    expect(verdict(spread([0.8, 0.85, 0.95]), atLeast)).toBe('missed within noise');
    expect(verdict(spread([0.7, 0.8, 0.85]), atLeast)).toBe('MISSED');
    const atMost = { op: '<=', value: 1.2 } as const;
    expect(verdict(spread([1.0, 1.1, 1.15]), atMost)).toBe('met');
    expect(verdict(spread([1.0, 1.1, 1.3]), atMost)).toBe('met within noise');
    expect(verdict(spread([1.1, 1.3, 1.4]), atMost)).toBe('missed within noise');
    expect(verdict(spread([1.3, 1.4, 1.5]), atMost)).toBe('MISSED');
  });

  it('tables the targets of a boot', () => {
    const s = targetsSection([{ key: 'p1.x', label: 'P1 x', target: { op: '>=', value: 0.9 }, rounds: [0.88, 0.91, 0.95] }]);
    expect(s.rows).toEqual([['P1 x', '≥ 0.9', '0.91', '0.88–0.95', '3', 'met within noise']]);
  });
});
