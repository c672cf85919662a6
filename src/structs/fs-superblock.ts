// Which file system a block device holds, from its superblock: ext2/ext3/ext4 (struct
// ext4_super_block at byte 1024, fs/ext4/ext4.h) and xfs (struct xfs_dsb at byte 0,
// fs/xfs/libxfs/xfs_format.h). Pure: the caller reads the first FS_PROBE_BYTES of the device.
import { viewOf } from './bytes.js';

export type FsSuperblockType = 'ext2' | 'ext3' | 'ext4' | 'xfs';

export interface FsSuperblock {
  type: FsSuperblockType;
  /** s_volume_name / sb_fname, up to its first NUL ('' when none). */
  label: string;
  /** s_uuid / sb_uuid in the usual 8-4-4-4-12 form. */
  uuid: string;
  /** The file system's block size. */
  blockSizeBytes: number;
}

/** Bytes a probe reads from the start of the device: the ext superblock ends at 2048. */
export const FS_PROBE_BYTES = 2048;

// ---- ext2/3/4 ---------------------------------------------------------------------------------------

/** The ext superblock's place on the device, whatever the block size. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
export const EXT4_SUPER_MAGIC = 0xef53;
/** Field offsets inside struct ext4_super_block (all little-endian). */
export const EXT4_SB = {
  s_log_block_size: 0x18,
  s_magic: 0x38,
  s_rev_level: 0x4c,
  s_feature_compat: 0x5c,
  s_feature_incompat: 0x60,
  s_feature_ro_compat: 0x64,
  s_uuid: 0x68,
  s_volume_name: 0x78,
} as const;
const EXT4_SB_SIZE = 1024;
/** s_log_block_size counts from 1 KiB; the kernel mounts at most 64 KiB blocks (EXT4_MAX_BLOCK_LOG_SIZE 16). */
const EXT4_MIN_BLOCK_LOG_SIZE = 10;
const EXT4_MAX_BLOCK_LOG_SIZE = 16;

export const EXT3_FEATURE_COMPAT_HAS_JOURNAL = 0x0004;
export const EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER = 0x0001;
export const EXT2_FEATURE_RO_COMPAT_LARGE_FILE = 0x0002;
export const EXT2_FEATURE_RO_COMPAT_BTREE_DIR = 0x0004;
export const EXT2_FEATURE_INCOMPAT_FILETYPE = 0x0002;
export const EXT3_FEATURE_INCOMPAT_RECOVER = 0x0004;
export const EXT3_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008;
export const EXT2_FEATURE_INCOMPAT_META_BG = 0x0010;
/** A few of ext4's own features (each alone makes a file system ext4): extents, 64bit, flex_bg, huge_file, metadata_csum. */
export const EXT4_FEATURE_INCOMPAT_EXTENTS = 0x0040;
export const EXT4_FEATURE_INCOMPAT_64BIT = 0x0080;
export const EXT4_FEATURE_INCOMPAT_FLEX_BG = 0x0200;
export const EXT4_FEATURE_RO_COMPAT_HUGE_FILE = 0x0008;
export const EXT4_FEATURE_RO_COMPAT_METADATA_CSUM = 0x0400;

/** What ext3 understands (libblkid's EXT3_FEATURE_*_SUPP); anything else is ext4's. */
const EXT3_FEATURE_RO_COMPAT_SUPP =
  EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE | EXT2_FEATURE_RO_COMPAT_BTREE_DIR;
const EXT3_FEATURE_INCOMPAT_SUPP = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_RECOVER | EXT2_FEATURE_INCOMPAT_META_BG;

/**
 * ext2, ext3 or ext4 from the feature flags, as blkid tells them apart: a feature ext3 does not
 * understand makes ext4 (extents, flex_bg, 64bit, huge_file, metadata_csum, ...); else a journal
 * makes ext3; else ext2. An external journal device (JOURNAL_DEV) is no file system to mount.
 */
export function extTypeOf(compat: number, incompat: number, roCompat: number): 'ext2' | 'ext3' | 'ext4' | null {
  if (incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV) return null;
  if (roCompat & ~EXT3_FEATURE_RO_COMPAT_SUPP || incompat & ~EXT3_FEATURE_INCOMPAT_SUPP) return 'ext4';
  return compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
}

function decodeExt(buf: Uint8Array): FsSuperblock | null {
  if (buf.length < EXT4_SUPERBLOCK_OFFSET + EXT4_SB_SIZE) return null;
  const sb = buf.subarray(EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_OFFSET + EXT4_SB_SIZE);
  const v = viewOf(sb);
  if (v.getUint16(EXT4_SB.s_magic, true) !== EXT4_SUPER_MAGIC) return null;
  const log = v.getUint32(EXT4_SB.s_log_block_size, true) + EXT4_MIN_BLOCK_LOG_SIZE;
  if (log > EXT4_MAX_BLOCK_LOG_SIZE) return null;
  // Revision 0 (EXT2_GOOD_OLD_REV) has no feature fields: whatever they hold is not a feature.
  const dynamic = v.getUint32(EXT4_SB.s_rev_level, true) >= 1;
  const type = dynamic
    ? extTypeOf(
        v.getUint32(EXT4_SB.s_feature_compat, true),
        v.getUint32(EXT4_SB.s_feature_incompat, true),
        v.getUint32(EXT4_SB.s_feature_ro_compat, true),
      )
    : 'ext2';
  if (type === null) return null;
  return {
    type,
    label: fixedString(sb, EXT4_SB.s_volume_name, 16),
    uuid: formatUuid(sb.subarray(EXT4_SB.s_uuid, EXT4_SB.s_uuid + 16)),
    blockSizeBytes: 2 ** log,
  };
}

// ---- xfs --------------------------------------------------------------------------------------------

/** 'XFSB' */
export const XFS_SB_MAGIC = 0x58465342;
/** Field offsets inside struct xfs_dsb (all big-endian). */
export const XFS_SB = {
  sb_magicnum: 0,
  sb_blocksize: 4,
  sb_uuid: 32,
  sb_versionnum: 100,
  sb_sectsize: 102,
  sb_fname: 108,
} as const;
/** The superblock fills the first sector; 512 bytes is the smallest sector. */
const XFS_SB_MIN_BYTES = 512;
const XFS_SB_VERSION_NUMBITS = 0x000f;
const XFS_SB_VERSION_1 = 1;
const XFS_SB_VERSION_5 = 5;
const XFS_MIN_BLOCKSIZE = 512;
const XFS_MAX_BLOCKSIZE = 65536;
const XFS_MIN_SECTORSIZE = 512;
const XFS_MAX_SECTORSIZE = 32768;

const isPowerOf2In = (n: number, min: number, max: number): boolean => n >= min && n <= max && (n & (n - 1)) === 0;

function decodeXfs(buf: Uint8Array): FsSuperblock | null {
  if (buf.length < XFS_SB_MIN_BYTES) return null;
  const v = viewOf(buf);
  if (v.getUint32(XFS_SB.sb_magicnum, false) !== XFS_SB_MAGIC) return null;
  // The sanity checks of xfs_validate_sb_common that need no other block: a magic alone may be chance.
  const version = v.getUint16(XFS_SB.sb_versionnum, false) & XFS_SB_VERSION_NUMBITS;
  const blockSize = v.getUint32(XFS_SB.sb_blocksize, false);
  const sectorSize = v.getUint16(XFS_SB.sb_sectsize, false);
  if (version < XFS_SB_VERSION_1 || version > XFS_SB_VERSION_5) return null;
  if (!isPowerOf2In(blockSize, XFS_MIN_BLOCKSIZE, XFS_MAX_BLOCKSIZE)) return null;
  if (!isPowerOf2In(sectorSize, XFS_MIN_SECTORSIZE, XFS_MAX_SECTORSIZE) || sectorSize > blockSize) return null;
  return {
    type: 'xfs',
    label: fixedString(buf, XFS_SB.sb_fname, 12),
    uuid: formatUuid(buf.subarray(XFS_SB.sb_uuid, XFS_SB.sb_uuid + 16)),
    blockSizeBytes: blockSize,
  };
}

// ---- both -------------------------------------------------------------------------------------------

/**
 * The file system whose superblock starts `buf` (the device's first FS_PROBE_BYTES, or fewer for a
 * smaller device), or null when none we know is there. Never throws: any bytes are a valid input.
 */
export function decodeFsSuperblock(buf: Uint8Array): FsSuperblock | null {
  // xfs first: its superblock is sector 0, which mke2fs zeroes, while a stale ext magic may sit
  // at byte 1080 of an xfs (inside its AGI) by chance.
  return decodeXfs(buf) ?? decodeExt(buf);
}

/** A char[n] label: up to the first NUL, as UTF-8 (a full field has no NUL). */
function fixedString(buf: Uint8Array, offset: number, size: number): string {
  const field = buf.subarray(offset, offset + size);
  const end = field.indexOf(0);
  return Buffer.from(field.subarray(0, end < 0 ? size : end)).toString('utf8');
}

function formatUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
