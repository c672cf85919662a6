// The order removeByPrefix removes a family of devices in: holders before what they hold.
import { describe, expect, test } from 'vitest';
import { teardownOrder, type TeardownNode } from '../../src/dm/teardown.js';
import { reasonLine } from '../../src/thin/errors.js';

const dev = (minor: number) => ({ major: 253, minor });
const node = (name: string, minor: number, ...deps: number[]): TeardownNode => ({ name, dev: dev(minor), deps: deps.map(dev) });

describe('teardownOrder', () => {
  test('thin devices before their pool, a stack top-down, strangers ignored', () => {
    const nodes = [
      node('pool', 0, 7, 8), // on two loop devices (not in the family)
      node('thin-a', 1, 0),
      node('thin-b', 2, 0),
      node('lin-low', 3),
      node('lin-mid', 4, 3),
      node('lin-top', 5, 4),
    ];
    expect(teardownOrder(nodes)).toEqual([['thin-a', 'thin-b', 'lin-top'], ['pool', 'lin-mid'], ['lin-low']]);
  });

  test('independent devices in one batch; none at all: no batch', () => {
    expect(teardownOrder([node('a', 1), node('b', 2)])).toEqual([['a', 'b']]);
    expect(teardownOrder([])).toEqual([]);
  });

  test('a device listing itself does not hold itself; a cycle ends in one last batch', () => {
    expect(teardownOrder([node('self', 1, 1)])).toEqual([['self']]);
    expect(teardownOrder([node('x', 1, 2), node('y', 2, 1), node('top', 3, 1)])).toEqual([['top'], ['x', 'y']]);
  });
});

describe('reasonLine', () => {
  test("mkfs.xfs's reason, not its warnings or usage", () => {
    const stderr =
      'warning: device is not properly aligned /dev/mapper/x\nFilesystem must be larger than 300MB.\nUsage: mkfs.xfs\n/* blocksize */\t\t[-b size=num]\n';
    expect(reasonLine(stderr)).toBe('Filesystem must be larger than 300MB.');
  });
  test('the last line when nothing is a warning; the first when everything is', () => {
    expect(reasonLine('mke2fs 1.47.0 (5-Feb-2023)\nmkfs.ext4: Device size reported to be zero.\n')).toBe(
      'mkfs.ext4: Device size reported to be zero.',
    );
    expect(reasonLine('WARNING: odd\n')).toBe('WARNING: odd');
    expect(reasonLine('')).toBe('');
  });
});
