import { describe, expect, test } from 'vitest';
import { OptionError } from '../../src/thin/errors.js';
import { optionsFromStrings, parsePoolOptions, parseSize } from '../../src/thin/options.js';
import { requireMkfs } from '../../src/thin/mkfs.js';

const hasAll = { findExecutable: (n: string) => `/sbin/${n}` };
const noXfs = { findExecutable: (n: string) => (n === 'mkfs.xfs' ? null : `/sbin/${n}`) };
const parse = (opts: string[]) => parsePoolOptions(opts, hasAll);
const GiB = 2 ** 30;

describe('sizes (go-units RAMInBytes: binary multiples)', () => {
  test.each([
    ['10G', 10 * GiB],
    ['10g', 10 * GiB],
    ['10GB', 10 * GiB],
    ['10GiB', 10 * GiB],
    ['512M', 512 * 2 ** 20],
    ['20GB', 20 * GiB],
    ['1.5G', 1.5 * GiB],
    ['64K', 65536],
    ['64 k', 65536],
    ['1T', 2 ** 40],
    ['4096', 4096],
    ['4096b', 4096],
  ])('%s', (s, n) => expect(parseSize('dm.basesize', s)).toBe(BigInt(n)));

  test.each(['', 'G', '10X', '-1G', '10 GB B', '1.2.3G', '0x10', '10GG', 'ten'])('rejects %j', (s) => {
    expect(() => parseSize('dm.basesize', s)).toThrow(OptionError);
  });
});

describe('defaults', () => {
  test("Docker's defaults, blkdiscard on for loopback", () => {
    const o = parse([]);
    expect(o).toMatchObject({
      baseSizeBytes: BigInt(10 * GiB),
      loopDataSizeBytes: BigInt(100 * GiB),
      loopMetadataSizeBytes: BigInt(2 * GiB),
      dataBlockSizeBytes: BigInt(65536),
      blkDiscard: true,
      minFreeSpacePercent: 10,
      fs: 'ext4',
      prefix: 'devmapper',
      useDeferredRemoval: false,
      useDeferredDeletion: false,
      mkfsArgs: [],
      mountOptions: [],
    });
  });
  test('blkdiscard defaults off on block devices', () => {
    expect(parse(['dm.datadev=/dev/sdb1', 'dm.metadatadev=/dev/sdc1']).blkDiscard).toBe(false);
    expect(parse(['dm.thinpooldev=/dev/mapper/p']).blkDiscard).toBe(false);
    expect(parse(['dm.thinpooldev=/dev/mapper/p']).thinPoolDevice).toBe('p');
  });
});

describe('every option parses', () => {
  test('strings and typed object agree', () => {
    const strings = [
      'dm.basesize=20G',
      'dm.loopdatasize=200G',
      'dm.loopmetadatasize=4G',
      'dm.fs=xfs',
      'dm.mkfsarg=-O ^has_journal',
      'dm.mkfsarg=-m 0',
      'dm.mountopt=nodiscard',
      'dm.mountopt=noatime,ro',
      'dm.blocksize=512K',
      'dm.blkdiscard=false',
      'DM.USE_DEFERRED_REMOVAL=true',
      'dm.use_deferred_deletion=1',
      'dm.min_free_space=5%',
      'dm.xfs_nospace_max_retries=3',
      'dm.prefix=dmtest',
      'dm.thin_check=false',
    ];
    const a = parse(strings);
    expect(a).toEqual({
      baseSizeBytes: BigInt(20 * GiB),
      loopDataSizeBytes: BigInt(200 * GiB),
      loopMetadataSizeBytes: BigInt(4 * GiB),
      fs: 'xfs',
      mkfsArgs: ['-O ^has_journal', '-m 0'],
      mountOptions: ['nodiscard', 'noatime,ro'],
      dataBlockSizeBytes: BigInt(512 * 1024),
      blkDiscard: false,
      useDeferredRemoval: true,
      useDeferredDeletion: true,
      minFreeSpacePercent: 5,
      xfsNoSpaceMaxRetries: 3,
      prefix: 'dmtest',
      thinCheck: false,
    });
    const b = parsePoolOptions(
      {
        baseSize: '20G',
        loopDataSize: 200 * GiB,
        loopMetadataSize: '4G',
        fs: 'xfs',
        mkfsArgs: ['-O ^has_journal', '-m 0'],
        mountOptions: ['nodiscard', 'noatime,ro'],
        blockSize: '512K',
        blkDiscard: false,
        useDeferredRemoval: true,
        useDeferredDeletion: true,
        minFreeSpace: 5,
        xfsNoSpaceMaxRetries: 3,
        prefix: 'dmtest',
        thinCheck: false,
      },
      hasAll,
    );
    expect(b).toEqual(a);
  });
  test('block sizes at the edges', () => {
    expect(parse(['dm.blocksize=64K']).dataBlockSizeBytes).toBe(BigInt(65536));
    expect(parse(['dm.blocksize=1G']).dataBlockSizeBytes).toBe(BigInt(GiB));
    expect(parse(['dm.blocksize=192K']).dataBlockSizeBytes).toBe(BigInt(192 * 1024));
  });
  test('min_free_space edges', () => {
    expect(parse(['dm.min_free_space=0%']).minFreeSpacePercent).toBe(0);
    expect(parse(['dm.min_free_space=99%']).minFreeSpacePercent).toBe(99);
  });
});

describe('every bad value is an OptionError naming the key', () => {
  test.each([
    [['dm.nosuch=1'], 'dm.nosuch'],
    [['basesize'], 'basesize'],
    [['dm.basesize=lots'], 'dm.basesize'],
    [['dm.basesize=0'], 'dm.basesize'],
    [['dm.basesize=1000'], 'dm.basesize'],
    [['dm.basesize=10G', 'dm.basesize=20G'], 'dm.basesize'],
    [['dm.loopdatasize=1Q'], 'dm.loopdatasize'],
    [['dm.loopmetadatasize='], 'dm.loopmetadatasize'],
    [['dm.blocksize=32K'], 'dm.blocksize'],
    [['dm.blocksize=100K'], 'dm.blocksize'],
    [['dm.blocksize=2G'], 'dm.blocksize'],
    [['dm.blocksize=0'], 'dm.blocksize'],
    [['dm.fs=btrfs'], 'dm.fs'],
    [['dm.fs=EXT4'], 'dm.fs'],
    [['dm.blkdiscard=yes'], 'dm.blkdiscard'],
    [['dm.use_deferred_removal=on'], 'dm.use_deferred_removal'],
    [['dm.use_deferred_deletion='], 'dm.use_deferred_deletion'],
    [['dm.datadev=/dev/sdb1'], 'dm.datadev'],
    [['dm.metadatadev=/dev/sdc1'], 'dm.metadatadev'],
    [['dm.datadev=sdb1', 'dm.metadatadev=/dev/sdc1'], 'dm.datadev'],
    [['dm.thinpooldev=p', 'dm.datadev=/dev/a', 'dm.metadatadev=/dev/b'], 'dm.thinpooldev'],
    [['dm.thinpooldev=/dev/mapper/'], 'dm.thinpooldev'],
    [['dm.thinpooldev=a/b'], 'dm.thinpooldev'],
    [['dm.thinpooldev=p', 'dm.loopdatasize=1G'], 'dm.loopdatasize'],
    [['dm.datadev=/dev/a', 'dm.metadatadev=/dev/b', 'dm.loopmetadatasize=1G'], 'dm.loopmetadatasize'],
    [['dm.thinpooldev=p', 'dm.blocksize=128K'], 'dm.blocksize'],
    [['dm.min_free_space=10'], 'dm.min_free_space'],
    [['dm.min_free_space=100%'], 'dm.min_free_space'],
    [['dm.min_free_space=-1%'], 'dm.min_free_space'],
    [['dm.min_free_space=1.5%'], 'dm.min_free_space'],
    [['dm.xfs_nospace_max_retries=-1', 'dm.fs=xfs'], 'dm.xfs_nospace_max_retries'],
    [['dm.xfs_nospace_max_retries=3'], 'dm.xfs_nospace_max_retries'],
    [['dm.mountopt='], 'dm.mountopt'],
    [['dm.prefix=a b'], 'dm.prefix'],
    [['dm.prefix='], 'dm.prefix'],
  ])('%j', (opts, key) => {
    const err = (() => {
      try {
        parse(opts);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(OptionError);
    expect((err as OptionError).key).toBe(key);
    expect((err as OptionError).code).toBe('EINVAL');
    expect((err as Error).message).toContain(key);
  });

  test('xfs where mkfs.xfs is missing: the options are valid, only making a base needs it', () => {
    expect(parsePoolOptions(['dm.fs=xfs'], noXfs).fs).toBe('xfs');
    expect(parsePoolOptions(['dm.fs=ext4'], noXfs).fs).toBe('ext4');
    const err = (() => {
      try {
        requireMkfs('xfs', noXfs.findExecutable);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(OptionError);
    expect((err as OptionError).key).toBe('dm.fs');
    expect((err as Error).message).toMatch(/mkfs\.xfs is not installed/);
    expect(requireMkfs('ext4', noXfs.findExecutable)).toBe('/sbin/mkfs.ext4');
  });

  test('typed object: bad types are caught too', () => {
    expect(() => parsePoolOptions({ baseSize: -5 }, hasAll)).toThrow(OptionError);
    expect(() => parsePoolOptions({ baseSize: 1.5 }, hasAll)).toThrow(OptionError);
    expect(() => parsePoolOptions({ minFreeSpace: 100 }, hasAll)).toThrow(OptionError);
    expect(() => parsePoolOptions({ xfsNoSpaceMaxRetries: 2.5, fs: 'xfs' }, hasAll)).toThrow(OptionError);
  });

  test('repeatable keys accumulate; keys are case-insensitive', () => {
    expect(optionsFromStrings(['dm.MkfsArg=a', 'dm.mkfsarg=b'])).toEqual({ mkfsArgs: ['a', 'b'] });
  });
});
