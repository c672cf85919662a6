// Bench P5, our side: per-device usage of a pool's metadata (file or block device) as thin_ls
// prints it with `-o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS`: a header of the field
// names, then one row a device, each value right-aligned under its name, ascending thin id.
import { type ThinDeviceUsage, readThinUsage, withMetadataBlocks } from '../src/thin/metadata/index.js';

export const USAGE_FIELDS = ['DEV', 'MAPPED_BLOCKS', 'EXCLUSIVE_BLOCKS', 'SHARED_BLOCKS'] as const;

export function formatUsageTable(rows: readonly (readonly number[])[]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = USAGE_FIELDS.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const lines = [`${USAGE_FIELDS.map((h, i) => h.padEnd(widths[i]!)).join(' ')} `];
  for (const r of cells) lines.push(`${r.map((c, i) => c.padStart(widths[i]!)).join(' ')} `);
  return `${lines.join('\n')}\n`;
}

/** The table of the metadata at `path`: open, read every device's mapping tree, close. */
export function usageTable(path: string): string {
  const devices: ThinDeviceUsage[] = withMetadataBlocks(path, (blocks) => readThinUsage(blocks).devices);
  return formatUsageTable(devices.map((d) => [d.thinId, d.mappedBlocks, d.exclusiveBlocks, d.sharedBlocks]));
}

/** Rows of numbers from a table as thin_ls or usageTable prints it (the header line skipped). */
export function parseUsageTable(text: string): number[][] {
  return text
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/).map(Number));
}
