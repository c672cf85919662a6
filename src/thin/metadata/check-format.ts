// Stand-in decoders with the contract's names, used by the check until the shared ones land.
export const THIN_METADATA_BLOCK_SIZE = 4096;
export const THIN_SUPERBLOCK_MAGIC = 27022010n;
export const SUPERBLOCK_CSUM_XOR = 160774;
export const BTREE_CSUM_XOR = 121107;
export const BITMAP_CSUM_XOR = 240779;
export const INDEX_CSUM_XOR = 160478;
export const INTERNAL_NODE = 1;
export const LEAF_NODE = 2;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = (TABLE[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

export function blockChecksum(block: Uint8Array, xor: number): number {
  return (crc32c(block.subarray(4, THIN_METADATA_BLOCK_SIZE)) ^ 0xffffffff ^ xor) >>> 0;
}

export class ThinMetadataError extends Error {
  readonly code = 'EILSEQ';
  constructor(
    readonly block: number,
    readonly struct: string,
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'ThinMetadataError';
  }
}

export interface MetadataBlocks {
  readonly nrBlocks: number;
  read(blocknr: number): Uint8Array;
  close(): void;
}

export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  bitmapRoot: number;
  refCountRoot: number;
}

export interface ThinSuperblock {
  flags: number;
  blocknr: number;
  uuid: Uint8Array;
  version: number;
  time: number;
  transactionId: bigint;
  heldRoot: number;
  dataSpaceMapRoot: SpaceMapRoot;
  metadataSpaceMapRoot: SpaceMapRoot;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  dataBlockSize: number;
  metadataBlockSize: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(b: Uint8Array, off: number, blocknr: number, struct: string, field: string): number {
  const v = view(b).getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ThinMetadataError(blocknr, struct, field, `${struct}.${field} ${v} is too large`);
  return Number(v);
}

function checkCsum(block: Uint8Array, blocknr: number, xor: number, struct: string): void {
  const want = blockChecksum(block, xor);
  const have = view(block).getUint32(0, true);
  if (want !== have) throw new ThinMetadataError(blocknr, struct, 'csum', `${struct}.csum ${have} at block ${blocknr}, computed ${want}`);
  const nr = u64(block, 8, blocknr, struct, 'blocknr');
  if (nr !== blocknr) throw new ThinMetadataError(blocknr, struct, 'blocknr', `${struct}.blocknr ${nr} at block ${blocknr}`);
}

function smRoot(b: Uint8Array, off: number, blocknr: number): SpaceMapRoot {
  const s = 'disk_sm_root';
  return {
    nrBlocks: u64(b, off, blocknr, s, 'nr_blocks'),
    nrAllocated: u64(b, off + 8, blocknr, s, 'nr_allocated'),
    bitmapRoot: u64(b, off + 16, blocknr, s, 'bitmap_root'),
    refCountRoot: u64(b, off + 24, blocknr, s, 'ref_count_root'),
  };
}

export function decodeThinSuperblock(block: Uint8Array, blocknr: number): ThinSuperblock {
  const s = 'thin_disk_superblock';
  checkCsum(block, blocknr, SUPERBLOCK_CSUM_XOR, s);
  const dv = view(block);
  if (dv.getBigUint64(32, true) !== THIN_SUPERBLOCK_MAGIC)
    throw new ThinMetadataError(blocknr, s, 'magic', `${s}.magic is not ${THIN_SUPERBLOCK_MAGIC}`);
  return {
    flags: dv.getUint32(4, true),
    blocknr,
    uuid: block.slice(16, 32),
    version: dv.getUint32(40, true),
    time: dv.getUint32(44, true),
    transactionId: dv.getBigUint64(48, true),
    heldRoot: u64(block, 56, blocknr, s, 'held_root'),
    dataSpaceMapRoot: smRoot(block, 64, blocknr),
    metadataSpaceMapRoot: smRoot(block, 192, blocknr),
    dataMappingRoot: u64(block, 320, blocknr, s, 'data_mapping_root'),
    deviceDetailsRoot: u64(block, 328, blocknr, s, 'device_details_root'),
    dataBlockSize: dv.getUint32(336, true),
    metadataBlockSize: dv.getUint32(340, true),
    metadataNrBlocks: u64(block, 344, blocknr, s, 'metadata_nr_blocks'),
    compatFlags: dv.getUint32(352, true),
    compatRoFlags: dv.getUint32(356, true),
    incompatFlags: dv.getUint32(360, true),
  };
}

export interface BtreeNode {
  blocknr: number;
  leaf: boolean;
  nrEntries: number;
  maxEntries: number;
  valueSize: number;
  key(i: number): number;
  valueOffset(i: number): number;
  block: Uint8Array;
}

export function decodeBtreeNode(block: Uint8Array, blocknr: number, valueSize: number): BtreeNode {
  const s = 'btree_node';
  checkCsum(block, blocknr, BTREE_CSUM_XOR, s);
  const dv = view(block);
  const flags = dv.getUint32(4, true);
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) throw new ThinMetadataError(blocknr, s, 'flags', `node_header.flags ${flags}`);
  const nrEntries = dv.getUint32(16, true);
  const maxEntries = dv.getUint32(20, true);
  const vs = dv.getUint32(24, true);
  const leaf = flags === LEAF_NODE;
  const want = leaf ? valueSize : 8;
  if (vs !== want) throw new ThinMetadataError(blocknr, s, 'value_size', `node_header.value_size ${vs}, expected ${want}`);
  if (32 + maxEntries * (8 + vs) > THIN_METADATA_BLOCK_SIZE || maxEntries % 3 !== 0)
    throw new ThinMetadataError(blocknr, s, 'max_entries', `node_header.max_entries ${maxEntries}`);
  if (nrEntries > maxEntries)
    throw new ThinMetadataError(blocknr, s, 'nr_entries', `node_header.nr_entries ${nrEntries} > max_entries ${maxEntries}`);
  const valuesAt = 32 + 8 * maxEntries;
  return {
    blocknr,
    leaf,
    nrEntries,
    maxEntries,
    valueSize: vs,
    key: (i) => u64(block, 32 + 8 * i, blocknr, s, 'keys'),
    valueOffset: (i) => valuesAt + vs * i,
    block,
  };
}

export interface DeviceDetails {
  mappedBlocks: number;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
}

export function decodeDeviceDetails(buf: Uint8Array, offset: number): DeviceDetails {
  const dv = view(buf);
  return {
    mappedBlocks: u64(buf, offset, -1, 'disk_device_details', 'mapped_blocks'),
    transactionId: dv.getBigUint64(offset + 8, true),
    creationTime: dv.getUint32(offset + 16, true),
    snapshottedTime: dv.getUint32(offset + 20, true),
  };
}

export function decodeBlockTime(buf: Uint8Array, offset: number): { dataBlock: number; time: number } {
  const v = view(buf).getBigUint64(offset, true);
  return { dataBlock: Number(v >> 24n), time: Number(v & 0xffffffn) };
}

export interface IndexEntry {
  blocknr: number;
  nrFree: number;
  noneFreeBefore: number;
}

export function decodeMetadataIndex(block: Uint8Array, blocknr: number): IndexEntry[] {
  checkCsum(block, blocknr, INDEX_CSUM_XOR, 'disk_metadata_index');
  const dv = view(block);
  const out: IndexEntry[] = [];
  for (let i = 0; i < 255; i++) {
    const o = 16 + 16 * i;
    out.push({
      blocknr: u64(block, o, blocknr, 'disk_index_entry', 'blocknr'),
      nrFree: dv.getUint32(o + 8, true),
      noneFreeBefore: dv.getUint32(o + 12, true),
    });
  }
  return out;
}

export function decodeBitmapHeader(block: Uint8Array, blocknr: number): void {
  checkCsum(block, blocknr, BITMAP_CSUM_XOR, 'disk_bitmap_header');
}

export function bitmapCount(block: Uint8Array, entry: number): 0 | 1 | 2 | 3 {
  const word = 16 + 8 * Math.floor(entry / 32);
  const b = entry % 32;
  const bit = (i: number) => ((block[word + (i >> 3)] as number) >> (i & 7)) & 1;
  return ((bit(2 * b) << 1) | bit(2 * b + 1)) as 0 | 1 | 2 | 3;
}
