// The text and JSON views of a pool and its layers, for `devmapper pool`, `layer` and `demo`.
// Pure functions over what the DeviceSet reports (devName reads sysfs for a display name only).
import { readFileSync } from 'node:fs';
import type { PoolMetadataCheck, PoolStatus, PoolThin } from '../thin/device-set.js';
import type { MetadataProblem } from '../thin/index.js';
import { formatCheckProblem } from '../thin/errors.js';
import { SECTOR_SIZE } from '../structs/units.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1073741824n -> '1.0 GiB'; bytes under 1 KiB as '512 B'. */
export function formatBytes(n: bigint | number): string {
  const b = BigInt(n);
  if (b < 1024n) return `${b} B`;
  let unit = 0;
  let v = Number(b);
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${v.toFixed(1)} ${UNITS[unit]}`;
}

/** used/total as a percentage with one decimal ('-' for an empty total). */
export function percent(used: bigint, total: bigint): string {
  if (total === 0n) return '-';
  return `${(Number((used * 10000n) / total) / 100).toFixed(1)}%`;
}

/** Columns padded to their widest cell; `right` lists the right-aligned column indexes. */
export function formatColumns(rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [k, c] of r.entries()) widths[k] = Math.max(widths[k] ?? 0, c.length);
  }
  return rows
    .map(
      (r) =>
        `${r
          .map((c, k) => (right.includes(k) ? c.padStart(widths[k] ?? 0) : c.padEnd(widths[k] ?? 0)))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** A loop or dm device's /dev name from its "maj:min", for display. */
function devName(majMin: string): string {
  try {
    const name = /^DEVNAME=(.*)$/m.exec(readFileSync(`/sys/dev/block/${majMin}/uevent`, 'utf8'))?.[1];
    return name ? `/dev/${name} (${majMin})` : majMin;
  } catch {
    return majMin;
  }
}

/** A pool as `pool init|status|resize --json` show it: byte counts are bigints (JSON strings). */
export interface PoolStatusView extends Omit<PoolStatus, 'sectorSizeBytes'> {
  home: string;
  layers: number;
  /** The pool's data block size (dm-thin's data_block_size, in bytes). */
  blockSizeBytes: bigint;
  baseSizeBytes: bigint;
}

/** The view of a DeviceSet's status: the block size under its own name, not Docker's "sector size". */
export function poolView(status: PoolStatus, home: string, layers: number, baseSizeBytes: bigint): PoolStatusView {
  const { sectorSizeBytes, ...rest } = status;
  return { ...rest, home, layers, blockSizeBytes: sectorSizeBytes, baseSizeBytes };
}

export function formatPoolStatus(s: PoolStatusView): string {
  const state = s.state === 'ok' ? `ok, ${s.mode ?? 'rw'}${s.needsCheck ? ', needs_check' : ''}` : s.state;
  const head = formatColumns([
    ['pool', `${s.poolName} (${state})`],
    ['home', s.home],
    ['block size', formatBytes(s.blockSizeBytes)],
    ['base size', formatBytes(s.baseSizeBytes)],
    ['transaction id', `${s.transactionId}`],
    ['data', s.dataFile ? `${s.dataFile} on ${devName(s.dataDevice)}` : devName(s.dataDevice)],
    ['metadata', s.metadataFile ? `${s.metadataFile} on ${devName(s.metadataDevice)}` : devName(s.metadataDevice)],
    ['layers', `${s.layers}`],
  ]);
  const usage = formatColumns(
    [
      ['', 'USED', 'TOTAL', 'USE%'],
      ['data', formatBytes(s.data.usedBytes), formatBytes(s.data.totalBytes), percent(s.data.usedBytes, s.data.totalBytes)],
      [
        'metadata',
        formatBytes(s.metadata.usedBytes),
        formatBytes(s.metadata.totalBytes),
        percent(s.metadata.usedBytes, s.metadata.totalBytes),
      ],
    ],
    [1, 2, 3],
  );
  return `${head}\n${usage}`;
}

/** A layer as `layer ls|status --json` show it. */
export interface LayerRow {
  id: string;
  thinId: number;
  sizeBytes: bigint;
  mappedBytes: bigint;
  /** Data blocks only this layer maps (what deleting it alone frees), from the pool's metadata. */
  exclusiveBytes: bigint;
  mappedSectors: bigint;
  highestMappedSector: bigint | null;
  transactionId: bigint;
  dmName: string;
  device: string | null;
  active: boolean;
  mounted: string[];
}

export function formatLayerRows(rows: readonly LayerRow[]): string {
  return formatColumns(
    [
      ['ID', 'THIN ID', 'SIZE', 'MAPPED', 'EXCLUSIVE', 'ACTIVE', 'MOUNTED'],
      ...rows.map((r) => [
        r.id,
        `${r.thinId}`,
        formatBytes(r.sizeBytes),
        formatBytes(r.mappedBytes),
        formatBytes(r.exclusiveBytes),
        r.active ? 'yes' : 'no',
        r.mounted.length > 0 ? r.mounted.join(',') : '-',
      ]),
    ],
    [1, 2, 3, 4],
  );
}

export function formatLayerStatus(r: LayerRow): string {
  return formatColumns([
    ['id', r.id],
    ['thin id', `${r.thinId}`],
    ['dm name', r.dmName],
    ['device', r.device ?? '(inactive)'],
    ['size', `${formatBytes(r.sizeBytes)} (${r.sizeBytes / BigInt(SECTOR_SIZE)} sectors)`],
    ['mapped', `${formatBytes(r.mappedBytes)} (${r.mappedSectors} sectors, ${percent(r.mappedBytes, r.sizeBytes)})`],
    ['exclusive', `${formatBytes(r.exclusiveBytes)} (mapped by this layer alone)`],
    ['highest mapped', r.highestMappedSector === null ? '-' : `sector ${r.highestMappedSector}`],
    ['transaction id', `${r.transactionId}`],
    ['mounted on', r.mounted.length > 0 ? r.mounted.join(', ') : '-'],
  ]);
}

/** A thin id of the pool as `pool thins --json` shows it: block counts and their bytes. */
export interface ThinRow {
  thinId: number;
  /** The layer id on it ('' is the base device); null: a thin id our metadata does not know. */
  hash: string | null;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
  mappedBytes: bigint;
  exclusiveBytes: bigint;
  sharedBytes: bigint;
}

export function thinRows(thins: readonly PoolThin[], blockSizeBytes: bigint): ThinRow[] {
  return thins.map((t) => ({
    thinId: t.thinId,
    hash: t.hash,
    transactionId: t.transactionId,
    creationTime: t.creationTime,
    snapshottedTime: t.snapshottedTime,
    mappedBlocks: t.mappedBlocks,
    exclusiveBlocks: t.exclusiveBlocks,
    sharedBlocks: t.sharedBlocks,
    mappedBytes: BigInt(t.mappedBlocks) * blockSizeBytes,
    exclusiveBytes: BigInt(t.exclusiveBlocks) * blockSizeBytes,
    sharedBytes: BigInt(t.sharedBlocks) * blockSizeBytes,
  }));
}

/** A thin id's owner in text: the layer id, (base), or that our metadata does not know it. */
export function thinOwner(hash: string | null): string {
  return hash === null ? '- (not in our metadata)' : hash === '' ? '(base)' : hash;
}

/** `pool thins`: one line per thin id; CREATED and SNAPSHOTTED are the pool's time counter then. */
export function formatThinRows(rows: readonly ThinRow[]): string {
  return formatColumns(
    [
      ['THIN ID', 'HASH', 'MAPPED', 'EXCLUSIVE', 'SHARED', 'CREATED', 'SNAPSHOTTED'],
      ...rows.map((r) => [
        `${r.thinId}`,
        thinOwner(r.hash),
        formatBytes(r.mappedBytes),
        formatBytes(r.exclusiveBytes),
        formatBytes(r.sharedBytes),
        `${r.creationTime}`,
        `${r.snapshottedTime}`,
      ]),
    ],
    [0, 2, 3, 4, 5, 6],
  );
}

/** `pool check --json`: what was read and what is wrong with it. */
export interface CheckView {
  poolName: string;
  home: string;
  path: string;
  ok: boolean;
  problems: MetadataProblem[];
  transactionId: bigint | null;
}

export function checkView(c: PoolMetadataCheck, home: string): CheckView {
  return {
    poolName: c.poolName,
    home,
    path: c.path,
    ok: c.ok,
    problems: [...c.problems],
    transactionId: c.superblock?.transactionId ?? null,
  };
}

/** `pool check`: one line when clean, else one line per problem. */
export function formatCheck(c: CheckView): string {
  if (c.ok) return `metadata of pool ${c.poolName} (${c.path}): clean, transaction id ${c.transactionId ?? '-'}\n`;
  return c.problems.map((p) => `${formatCheckProblem(p)}\n`).join('');
}
