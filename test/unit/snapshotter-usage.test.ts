// Usage counts the snapshot's mappings that are not its parent's: a block written (remapped),
// a block the parent never mapped; never a block still shared, nor one only the parent maps.
import { describe, expect, it } from 'vitest';
import { differingBlocks } from '../../src/snapshotter/usage.js';

describe('differingBlocks', () => {
  it('counts remapped and new virtual blocks only', () => {
    const parent = new Map([
      [0, 100],
      [1, 101],
      [2, 102],
      [7, 107],
    ]);
    const child: [number, number][] = [
      [0, 100], // shared
      [1, 555], // written after the snapshot
      [2, 102], // shared
      [3, 556], // new
    ];
    expect(differingBlocks(child, parent)).toBe(2);
    expect(differingBlocks([], parent)).toBe(0);
    expect(differingBlocks(child, new Map())).toBe(4);
  });
});
