// The file system probe against the first 2 KiB of file systems made by mke2fs and mkfs.xfs, with
// what blkid said of the same files as the oracle (test/golden/fs-superblocks/make.sh), and against
// superblocks edited field by field for what blkid tells apart by feature flags.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { probeFsType, readFsSuperblock, UnknownFsError } from '../../src/blk/index.js';
import {
  decodeFsSuperblock,
  EXT2_FEATURE_INCOMPAT_FILETYPE,
  EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER,
  EXT3_FEATURE_COMPAT_HAS_JOURNAL,
  EXT3_FEATURE_INCOMPAT_JOURNAL_DEV,
  EXT4_FEATURE_INCOMPAT_64BIT,
  EXT4_FEATURE_INCOMPAT_EXTENTS,
  EXT4_FEATURE_INCOMPAT_FLEX_BG,
  EXT4_FEATURE_RO_COMPAT_HUGE_FILE,
  EXT4_FEATURE_RO_COMPAT_METADATA_CSUM,
  EXT4_SB,
  EXT4_SUPER_MAGIC,
  EXT4_SUPERBLOCK_OFFSET,
  extTypeOf,
  FS_PROBE_BYTES,
  XFS_SB,
  XFS_SB_MAGIC,
} from '../../src/structs/fs-superblock.js';

const DIR = join(import.meta.dirname, '../golden/fs-superblocks');
const head = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, `${name}.head`)));

/** blkid.txt: `NAME KEY=VALUE ...` per file. */
const BLKID = new Map(
  readFileSync(join(DIR, 'blkid.txt'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [name, ...kv] = line.split(' ');
      return [name!, Object.fromEntries(kv.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]))] as const;
    }),
);

describe('real superblocks: what blkid says', () => {
  test('the oracle covers every kind', () => {
    expect(new Set([...BLKID.values()].map((v) => v['TYPE']))).toEqual(new Set(['ext2', 'ext3', 'ext4', 'jbd', 'xfs']));
  });
  for (const [name, want] of BLKID) {
    test(name, () => {
      const sb = decodeFsSuperblock(head(name));
      if (want['TYPE'] === 'jbd') {
        // An external ext journal: blkid names it, but it is no file system to mount.
        expect(sb).toBeNull();
        return;
      }
      expect(sb).toEqual({
        type: want['TYPE'],
        label: want['LABEL'] ?? '',
        uuid: want['UUID'],
        blockSizeBytes: expect.any(Number),
      });
    });
  }
  test('block sizes: 1 KiB for small ext, -b 4096, xfs 4 KiB', () => {
    expect(decodeFsSuperblock(head('ext2'))?.blockSizeBytes).toBe(1024);
    expect(decodeFsSuperblock(head('ext4-4k'))?.blockSizeBytes).toBe(4096);
    expect(decodeFsSuperblock(head('xfs'))?.blockSizeBytes).toBe(4096);
  });
});

/** A copy of `name`'s head with the ext superblock's feature words replaced. */
function extWith(name: string, compat: number, incompat: number, roCompat: number): Uint8Array {
  const b = Uint8Array.from(head(name));
  const v = new DataView(b.buffer, EXT4_SUPERBLOCK_OFFSET);
  v.setUint32(EXT4_SB.s_feature_compat, compat, true);
  v.setUint32(EXT4_SB.s_feature_incompat, incompat, true);
  v.setUint32(EXT4_SB.s_feature_ro_compat, roCompat, true);
  return b;
}

describe('ext2, ext3 or ext4 by feature flags', () => {
  const plain = [0, EXT2_FEATURE_INCOMPAT_FILETYPE, EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER] as const;
  test('no journal, only ext2 features: ext2; a journal: ext3', () => {
    expect(decodeFsSuperblock(extWith('ext2', ...plain))?.type).toBe('ext2');
    expect(decodeFsSuperblock(extWith('ext2', EXT3_FEATURE_COMPAT_HAS_JOURNAL, plain[1], plain[2]))?.type).toBe('ext3');
  });
  test.each([
    ['extents', 0, EXT4_FEATURE_INCOMPAT_EXTENTS],
    ['64bit', 0, EXT4_FEATURE_INCOMPAT_64BIT],
    ['flex_bg', 0, EXT4_FEATURE_INCOMPAT_FLEX_BG],
    ['huge_file', EXT4_FEATURE_RO_COMPAT_HUGE_FILE, 0],
    ['metadata_csum', EXT4_FEATURE_RO_COMPAT_METADATA_CSUM, 0],
  ])('%s alone makes ext4, with or without a journal', (_, ro, inc) => {
    for (const journal of [0, EXT3_FEATURE_COMPAT_HAS_JOURNAL]) {
      expect(extTypeOf(journal, plain[1] | inc, plain[2] | ro)).toBe('ext4');
      expect(decodeFsSuperblock(extWith('ext3', journal, plain[1] | inc, plain[2] | ro))?.type).toBe('ext4');
    }
  });
  test('an external journal device is not a file system', () => {
    expect(extTypeOf(0, EXT3_FEATURE_INCOMPAT_JOURNAL_DEV, 0)).toBeNull();
  });
  test('revision 0 has no features: ext2 whatever the feature words hold', () => {
    const b = extWith('ext4', 0, EXT4_FEATURE_INCOMPAT_EXTENTS, 0);
    new DataView(b.buffer, EXT4_SUPERBLOCK_OFFSET).setUint32(EXT4_SB.s_rev_level, 0, true);
    expect(decodeFsSuperblock(b)?.type).toBe('ext2');
  });
});

describe('not a file system we know', () => {
  test('zeros, a short buffer, a bad magic, absurd fields', () => {
    expect(decodeFsSuperblock(new Uint8Array(FS_PROBE_BYTES))).toBeNull();
    expect(decodeFsSuperblock(new Uint8Array(0))).toBeNull();
    // The ext superblock ends at 2048: one byte short is no ext.
    expect(decodeFsSuperblock(head('ext4').subarray(0, FS_PROBE_BYTES - 1))).toBeNull();
    // The xfs superblock needs its first sector only.
    expect(decodeFsSuperblock(head('xfs').subarray(0, 512))?.type).toBe('xfs');
    expect(decodeFsSuperblock(head('xfs').subarray(0, 511))).toBeNull();

    const ext = Uint8Array.from(head('ext4'));
    const ev = new DataView(ext.buffer, EXT4_SUPERBLOCK_OFFSET);
    ev.setUint16(EXT4_SB.s_magic, EXT4_SUPER_MAGIC ^ 1, true);
    expect(decodeFsSuperblock(ext)).toBeNull();
    ev.setUint16(EXT4_SB.s_magic, EXT4_SUPER_MAGIC, true);
    ev.setUint32(EXT4_SB.s_log_block_size, 7, true); // 128 KiB blocks
    expect(decodeFsSuperblock(ext)).toBeNull();

    const edits: [number, number, 16 | 32][] = [
      [XFS_SB.sb_magicnum, XFS_SB_MAGIC ^ 1, 32],
      [XFS_SB.sb_blocksize, 3000, 32],
      [XFS_SB.sb_blocksize, 1 << 17, 32],
      [XFS_SB.sb_sectsize, 256, 16],
      [XFS_SB.sb_sectsize, 8192, 16], // larger than its 4 KiB blocks
      [XFS_SB.sb_versionnum, 0, 16],
      [XFS_SB.sb_versionnum, 6, 16],
    ];
    for (const [at, value, bits] of edits) {
      const x = Uint8Array.from(head('xfs'));
      const xv = new DataView(x.buffer);
      if (bits === 32) xv.setUint32(at, value, false);
      else xv.setUint16(at, (xv.getUint16(at, false) & 0xfff0) | value, false);
      if (at === XFS_SB.sb_sectsize) xv.setUint16(at, value, false);
      expect(decodeFsSuperblock(x), `xfs with offset ${at} = ${value}`).toBeNull();
    }
  });
});

describe('probeFsType reads the first bytes of a path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fs-probe-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  test('each kind; a file shorter than the probe; nothing known', () => {
    for (const name of ['ext2', 'ext3', 'ext4', 'xfs']) {
      const f = join(dir, name);
      writeFileSync(f, head(name));
      expect(probeFsType(f)).toBe(name);
    }
    const short = join(dir, 'short');
    writeFileSync(short, head('xfs').subarray(0, 600));
    expect(readFsSuperblock(short)?.label).toBe('lbl-xfs');
    const zeros = join(dir, 'zeros');
    writeFileSync(zeros, new Uint8Array(4096));
    expect(readFsSuperblock(zeros)).toBeNull();
    const err = (() => {
      try {
        probeFsType(zeros);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UnknownFsError);
    expect((err as UnknownFsError).code).toBe('EMEDIUMTYPE');
    expect((err as Error).message).toContain(zeros);
  });
});
