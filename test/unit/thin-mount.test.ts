import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MS_NOATIME, MS_NODEV, MS_RDONLY } from '../../src/ioctl/libc.js';
import { mkfsArgv } from '../../src/thin/mkfs.js';
import {
  choosesDiscard,
  isMounted,
  mountOptionsFor,
  mountsOf,
  mountsOfDevice,
  parseMountInfo,
  parseMountOptions,
} from '../../src/thin/mount.js';

describe('mount options', () => {
  test('flags are split from file system data', () => {
    expect(parseMountOptions(['nodiscard', 'ro,noatime', 'nodev,data=ordered'])).toEqual({
      flags: MS_RDONLY | MS_NOATIME | MS_NODEV,
      data: 'nodiscard,data=ordered',
    });
    expect(parseMountOptions(['ro', 'rw'])).toEqual({ flags: 0, data: '' });
  });
  test('xfs gets nouuid; no SELinux context without a label', () => {
    expect(mountOptionsFor('xfs', ['discard'])).toEqual(['discard', 'nouuid']);
    expect(mountOptionsFor('ext4', [])).toEqual([]);
    expect(mountOptionsFor('ext3', ['nodev'])).toEqual(['nodev']);
  });
  test('discard is the default unless dm.mountopt chooses: discard, discard=..., nodiscard', () => {
    expect(choosesDiscard([])).toBe(false);
    expect(choosesDiscard(['noatime,nodev', 'data=ordered'])).toBe(false);
    expect(choosesDiscard(['nodiscard'])).toBe(true);
    expect(choosesDiscard(['noatime,nodiscard'])).toBe(true);
    expect(choosesDiscard(['discard'])).toBe(true);
    expect(choosesDiscard(['discard=async'])).toBe(true);
    // Inside a quoted value it is no option of its own.
    expect(choosesDiscard(['context="a,nodiscard"'])).toBe(false);
  });
});

describe('mkfs argv: an array, mkfsarg occurrences verbatim before the device', () => {
  test('ext4', () => {
    expect(mkfsArgv('ext4', '/dev/mapper/x', ['-O ^has_journal', '-m', '0'], '/sbin/mkfs.ext4')).toEqual([
      '/sbin/mkfs.ext4',
      '-E',
      'nodiscard,lazy_itable_init=0,lazy_journal_init=0',
      '-O ^has_journal',
      '-m',
      '0',
      '/dev/mapper/x',
    ]);
  });
  test('xfs', () => {
    expect(mkfsArgv('xfs', '/dev/mapper/x', ['; rm -rf /'], '/sbin/mkfs.xfs')).toEqual([
      '/sbin/mkfs.xfs',
      '-K',
      '; rm -rf /',
      '/dev/mapper/x',
    ]);
  });
});

const INFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '90 22 253:3 / /var/lib/x/mnt/with\\040space rw,relatime shared:50 - ext4 /dev/mapper/dmtest-8:1-12-abc rw,stripe=16',
  '91 22 253:3 / /other rw - ext4 /dev/mapper/dmtest-8:1-12-abc rw',
  'garbage line',
].join('\n');

describe('mountinfo', () => {
  test('parses, unescapes, finds by path and by device', () => {
    const t = parseMountInfo(INFO);
    expect(t).toHaveLength(3);
    expect(t[1]).toEqual({
      mountId: 90,
      majorMinor: '253:3',
      mountPoint: '/var/lib/x/mnt/with space',
      fsType: 'ext4',
      source: '/dev/mapper/dmtest-8:1-12-abc',
    });
    expect(isMounted('/var/lib/x/mnt/with space', t)).toBe(true);
    expect(isMounted('/var/lib/x/mnt/with space/', t)).toBe(true);
    expect(isMounted('/var/lib/x', t)).toBe(false);
    expect(mountsOf('253:3', t).map((m) => m.mountPoint)).toEqual(['/var/lib/x/mnt/with space', '/other']);
  });
  test('a device looked up in the table file parses only its lines, and exactly its number', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mountinfo-'));
    try {
      const file = join(dir, 'mountinfo');
      // ` 253:3 ` also stands in another device's line (its source): that line is not 253:3's.
      const decoy = '92 22 253:30 / /mnt rw - ext4 253:3 rw';
      writeFileSync(file, `${INFO}\n${decoy}`);
      expect(mountsOfDevice('253:3', file).map((m) => m.mountPoint)).toEqual(['/var/lib/x/mnt/with space', '/other']);
      expect(mountsOfDevice('253:30', file).map((m) => m.mountPoint)).toEqual(['/mnt']);
      expect(mountsOfDevice('253:4', file)).toEqual([]);
      writeFileSync(file, INFO.split('\n')[1] as string); // no newline at the end
      expect(mountsOfDevice('253:3', file)).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('the real table of this process has a root', () => {
    expect(isMounted('/')).toBe(true);
  });
});
