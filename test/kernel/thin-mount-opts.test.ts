// Mount-time options in a real kernel: dm.mkfsarg seen in the base's superblock (our probe, blkid
// and dumpe2fs agreeing), a 1 MiB dm.blocksize in the pool's table and status with layers working
// on it, layers mounted by the type their superblock says rather than dm.fs (ext3, ext2, an xfs
// pool reopened without dm.fs and without mkfs.xfs), and SELinux mount labels.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { probeFsType, readFsSuperblock } from '../../src/blk/index.js';
import { sysMount, sysUmount2 } from '../../src/ioctl/libc.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { MountOptionError, OptionError } from '../../src/thin/errors.js';
import { mount, mountOptionsFor } from '../../src/thin/mount.js';
import { PoolNaming } from '../../src/thin/naming.js';
import { dmsetup, newHome, requireKernelTier, SMALL, sweep, mountAt } from './thin-support.js';

requireKernelTier();

const MiB = 1024 * 1024;

/** blkid's low-level probe of a device (an oracle of our own probe): TYPE, LABEL, UUID... */
function blkid(device: string): Record<string, string> {
  const out = execFileSync('blkid', ['-p', '-o', 'export', device], { encoding: 'utf8' });
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** A pool in a new home for one describe block: opened before, shut down and removed after. */
function poolFor(tag: string, options: () => string[]): { set: () => DeviceSet; home: () => string; mnt: (n: string) => string } {
  let home = '';
  let set: DeviceSet | undefined;
  beforeAll(async () => {
    await sweep();
    home = newHome(tag);
    set = await DeviceSet.open(home, options());
  });
  afterAll(async () => {
    await set?.shutdown().catch(() => undefined);
    await sweep();
    rmSync(home, { recursive: true, force: true });
  });
  return {
    set: () => set!,
    home: () => home,
    mnt: (n) => {
      const p = join(home, 'm', n);
      mkdirSync(p, { recursive: true });
      return p;
    },
  };
}

describe('dm.mkfsarg and a 1 MiB dm.blocksize (ext4)', () => {
  const p = poolFor('mkfsarg', () => [
    ...SMALL,
    'dm.blocksize=1M',
    'dm.mkfsarg=-L',
    'dm.mkfsarg=dmtest-label',
    // Docker's documented example: one argv element, read by mke2fs as -O " ^has_journal".
    'dm.mkfsarg=-O ^has_journal',
  ]);

  test('the pool table and status count 1 MiB blocks', () => {
    const set = p.set();
    // 2048 sectors = 1 MiB per data block; 256 MiB of data = 256 blocks.
    expect(dmsetup('table', set.poolName)).toMatch(/^0 524288 thin-pool \d+:\d+ \d+:\d+ 2048 \d+ /);
    const words = dmsetup('status', set.poolName).split(' ');
    expect(words[5]).toMatch(/^\d+\/256$/);
    const st = set.status();
    expect(st.sectorSizeBytes).toBe(BigInt(MiB));
    expect(st.data.totalBytes).toBe(256n * BigInt(MiB));
    expect(st.data.usedBytes).toBe(BigInt(words[5]!.split('/')[0]!) * BigInt(MiB));
  });

  test('mkfs got the arguments: the label and no journal, as our probe, blkid and dumpe2fs read them', async () => {
    const set = p.set();
    await set.addDevice('l1');
    await set.activateDevice('l1');
    const dev = set.devicePath('l1');
    const sb = readFsSuperblock(dev);
    expect(sb).toMatchObject({ type: 'ext4', label: 'dmtest-label' });
    expect(blkid(dev)).toMatchObject({ TYPE: 'ext4', LABEL: 'dmtest-label', UUID: sb!.uuid });
    const features = execFileSync('dumpe2fs', ['-h', dev], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).match(
      /^Filesystem features:\s+(.*)$/m,
    )![1]!;
    expect(features.split(' ')).toContain('extent');
    expect(features.split(' ')).not.toContain('has_journal');
    await set.deactivateDevice('l1');
  });

  test('layers work on 1 MiB blocks: written, snapshotted, mapped by whole blocks', async () => {
    const set = p.set();
    const data = Buffer.alloc(3 * MiB + 1, 0x5a);
    await set.mountDevice('l1', p.mnt('l1'));
    writeFileSync(join(p.mnt('l1'), 'f'), data);
    await set.unmountDevice('l1');
    await set.addDevice('l2', 'l1');
    await set.mountDevice('l2', p.mnt('l2'));
    expect(readFileSync(join(p.mnt('l2'), 'f')).equals(data)).toBe(true);
    writeFileSync(join(p.mnt('l2'), 'g'), 'second');
    await set.unmountDevice('l2');
    const st = await set.getDeviceStatus('l1');
    expect(st.mappedSectors % 2048n).toBe(0n);
    expect(st.mappedSectors * 512n).toBeGreaterThanOrEqual(BigInt(data.length));
  });
});

describe('layers are mounted by the type their superblock says, not dm.fs', () => {
  describe('ext3 (dm.mkfsarg=-t ext3)', () => {
    const p = poolFor('ext3', () => [...SMALL, 'dm.mkfsarg=-t', 'dm.mkfsarg=ext3']);
    test('probed ext3 (as blkid says), mounted as ext3, with discard', async () => {
      const set = p.set();
      expect(set.options.fs).toBe('ext4');
      await set.addDevice('e3');
      await set.activateDevice('e3');
      expect(probeFsType(set.devicePath('e3'))).toBe('ext3');
      expect(blkid(set.devicePath('e3'))['TYPE']).toBe('ext3');
      await set.mountDevice('e3', p.mnt('e3'));
      expect(mountAt(p.mnt('e3')).fsType).toBe('ext3');
      expect(mountAt(p.mnt('e3')).superOptions).toContain('discard');
      writeFileSync(join(p.mnt('e3'), 'f'), 'ext3');
      await set.unmountDevice('e3');
    });
  });

  describe('ext2 (dm.mkfsarg=-t ext2)', () => {
    const p = poolFor('ext2', () => [...SMALL, 'dm.mkfsarg=-t', 'dm.mkfsarg=ext2']);
    test('probed ext2; the ext2 driver refuses discard (EINVAL): mounted again without it', async () => {
      const set = p.set();
      await set.addDevice('e2');
      await set.activateDevice('e2');
      expect(probeFsType(set.devicePath('e2'))).toBe('ext2');
      expect(blkid(set.devicePath('e2'))['TYPE']).toBe('ext2');
      // The oracle of the fallback: this kernel's ext2 refuses `discard` outright.
      expect(() => mount(set.devicePath('e2'), p.mnt('probe'), 'ext2', ['discard'])).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      await set.mountDevice('e2', p.mnt('e2'));
      expect(mountAt(p.mnt('e2')).fsType).toBe('ext2');
      expect(mountAt(p.mnt('e2')).superOptions).not.toContain('discard');
      await set.unmountDevice('e2');
    });
    test('dm.mountopt=nodiscard, which the ext2 driver refuses too: mounted without the word', async () => {
      await p.set().close();
      const set = await DeviceSet.open(p.home(), [...SMALL, 'dm.mountopt=nodiscard']);
      try {
        await set.activateDevice('e2');
        expect(() => mount(set.devicePath('e2'), p.mnt('probe'), 'ext2', ['nodiscard'])).toThrow(
          expect.objectContaining({ code: 'EINVAL' }),
        );
        await set.mountDevice('e2', p.mnt('e2'));
        expect(mountAt(p.mnt('e2')).fsType).toBe('ext2');
        await set.unmountDevice('e2');
      } finally {
        await set.shutdown();
      }
    });
  });

  describe('xfs, reopened without dm.fs and without any mkfs on PATH', () => {
    // xfsprogs refuses file systems under 300 MiB; thin devices are sparse, so this costs little.
    const xfs = [...SMALL.filter((o) => !o.startsWith('dm.basesize')), 'dm.basesize=320M', 'dm.fs=xfs'];
    const p = poolFor('xfsprobe', () => xfs);
    test('its layers mount as xfs (nouuid, discard), with their files', async () => {
      let set = p.set();
      await set.addDevice('x1');
      await set.mountDevice('x1', p.mnt('x1'));
      writeFileSync(join(p.mnt('x1'), 'f'), 'xfs layer');
      await set.unmountDevice('x1');
      await set.close();

      const noMkfs = { findExecutable: () => null };
      set = await DeviceSet.open(
        p.home(),
        SMALL.filter((o) => !o.startsWith('dm.basesize')),
        noMkfs,
      );
      try {
        expect(set.options.fs).toBe('ext4');
        await set.addDevice('x2', 'x1');
        await set.activateDevice('x2');
        expect(probeFsType(set.devicePath('x2'))).toBe('xfs');
        expect(blkid(set.devicePath('x2'))['TYPE']).toBe('xfs');
        for (const h of ['x1', 'x2']) {
          await set.mountDevice(h, p.mnt(h));
          expect(mountAt(p.mnt(h)).fsType).toBe('xfs');
          expect(mountAt(p.mnt(h)).superOptions).toEqual(expect.arrayContaining(['nouuid', 'discard']));
          expect(readFileSync(join(p.mnt(h), 'f'), 'utf8')).toBe('xfs layer');
        }
        for (const h of ['x1', 'x2']) await set.unmountDevice(h);
      } finally {
        await set.shutdown();
      }
    });
  });

  test('a new pool where mkfs.ext4 is missing is refused before anything is made', async () => {
    await sweep();
    const home = newHome('nomkfs');
    try {
      await expect(DeviceSet.open(home, SMALL, { findExecutable: () => null })).rejects.toSatisfy(
        (e) => e instanceof OptionError && e.key === 'dm.fs' && /mkfs\.ext4 is not installed/.test(e.message),
      );
      expect(readdirSync(home)).toEqual([]);
      const naming = PoolNaming.forHome(home, 'dmtest');
      expect(dmsetup('ls')).not.toContain(naming.stem);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('mount labels (SELinux context)', () => {
  const LABEL = 'system_u:object_r:container_file_t:s0:c1,c2';
  const SELINUXFS = '/sys/fs/selinux';
  const p = poolFor('label', () => SMALL);
  let mountedSelinuxfs = false;
  afterAll(() => {
    if (mountedSelinuxfs) sysUmount2(SELINUXFS);
  });

  test('no SELinux: the label is checked but not passed', async () => {
    // The guest boots without an SELinux policy and without selinuxfs mounted.
    expect(existsSync(`${SELINUXFS}/enforce`)).toBe(false);
    expect(mountOptionsFor('ext4', [], LABEL)).toEqual([]);
    const set = p.set();
    await set.addDevice('lab');
    await set.mountDevice('lab', p.mnt('lab'), LABEL);
    expect(mountAt(p.mnt('lab')).fsType).toBe('ext4');
    await set.unmountDevice('lab');
  });

  test('a label that would break out of its quotes is refused: no mount, no device, no folder left', async () => {
    const set = p.set();
    const target = join(p.home(), 'm', 'new', 'deep');
    await expect(set.mountDevice('lab', target, 'a",ro,"b', { createMountPoint: true })).rejects.toBeInstanceOf(MountOptionError);
    expect(existsSync(join(p.home(), 'm', 'new'))).toBe(false);
    expect(set.hasActivatedDevice('lab')).toBe(false);
  });

  test('with selinuxfs mounted (SELinux on, no policy loaded): context="<label>" reaches mount(2), and SELinux refuses it', async () => {
    // The kernel has SELinux built in: mounting selinuxfs makes /sys/fs/selinux/enforce, as on a
    // host with SELinux. Without a policy loaded SELinux cannot label a mount: it refuses context=
    // (EINVAL) and says so in the kernel log, which is how this test knows the option got there.
    sysMount('selinuxfs', SELINUXFS, 'selinuxfs', 0, null);
    mountedSelinuxfs = true;
    expect(existsSync(`${SELINUXFS}/enforce`)).toBe(true);
    expect(mountOptionsFor('ext4', ['nodev'], LABEL)).toEqual(['nodev', `context="${LABEL}"`]);
    const set = p.set();
    // A line of our own in the kernel log marks where this mount's messages start (the ring buffer
    // may be full after a long run: its length says nothing).
    const marker = `dmtest-${process.pid}-selinux-mount`;
    writeFileSync('/dev/kmsg', `${marker}\n`);
    await expect(set.mountDevice('lab', p.mnt('lab'), LABEL)).rejects.toMatchObject({ code: 'EINVAL' });
    const kernelLog = execFileSync('dmesg', { encoding: 'utf8' });
    const log = kernelLog.slice(kernelLog.lastIndexOf(marker));
    expect(log, log).toMatch(/SELinux/);
    expect(set.hasActivatedDevice('lab')).toBe(false);
    // The same mount without a label goes through.
    await set.mountDevice('lab', p.mnt('lab'));
    expect(mountAt(p.mnt('lab')).fsType).toBe('ext4');
    await set.unmountDevice('lab');
    sysUmount2(SELINUXFS);
    mountedSelinuxfs = false;
  });
});
