// thin-provisioning-tools as the oracle of our metadata reader: thin_ls's table and thin_dump's XML
// parsed into plain records, and the same records built from our reader (readThinUsage,
// readThinDevices, forEachMapping), so a test compares the two with one toEqual.
import { readThinDevices, readThinUsage, forEachMapping, type MetadataBlocks } from '../../src/thin/metadata/index.js';

/** The thin_ls columns the oracle asks for, in this order (thin_ls 0.9's names). */
export const THIN_LS_FIELDS = [
  'DEV',
  'MAPPED_BLOCKS',
  'EXCLUSIVE_BLOCKS',
  'SHARED_BLOCKS',
  'TRANSACTION',
  'CREATE_TIME',
  'SNAP_TIME',
] as const;

/** `thin_ls [-m] --no-headers -o <THIN_LS_FIELDS> FILE`: the arguments after the program name. */
export function thinLsArgs(file: string, held: boolean): string[] {
  return [...(held ? ['-m'] : []), '--no-headers', '-o', THIN_LS_FIELDS.join(','), file];
}

/** `thin_dump [-m] FILE`. */
export function thinDumpArgs(file: string, held: boolean): string[] {
  return [...(held ? ['-m'] : []), file];
}

/** One row of thin_ls. thin_ls counts a data block exclusive when no other device's tree maps it. */
export interface ThinLsRow {
  thinId: number;
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
}

function decimal(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`${what}: not a decimal number: ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`${what}: ${text} is past Number.MAX_SAFE_INTEGER`);
  return n;
}

export function parseThinLs(text: string): ThinLsRow[] {
  const rows: ThinLsRow[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    if (f.length !== THIN_LS_FIELDS.length) throw new Error(`thin_ls: a row of ${f.length} fields: ${JSON.stringify(line)}`);
    const [dev, mapped, exclusive, shared, transaction, create, snap] = f as [string, string, string, string, string, string, string];
    rows.push({
      thinId: decimal(dev, 'thin_ls DEV'),
      mappedBlocks: decimal(mapped, 'thin_ls MAPPED_BLOCKS'),
      exclusiveBlocks: decimal(exclusive, 'thin_ls EXCLUSIVE_BLOCKS'),
      sharedBlocks: decimal(shared, 'thin_ls SHARED_BLOCKS'),
      transactionId: BigInt(decimal(transaction, 'thin_ls TRANSACTION')),
      creationTime: decimal(create, 'thin_ls CREATE_TIME'),
      snapshottedTime: decimal(snap, 'thin_ls SNAP_TIME'),
    });
  }
  return rows;
}

/** thin_dump's `<superblock>` attributes (its uuid is always printed empty, so it is left out). */
export interface DumpSuperblock {
  time: number;
  transactionId: bigint;
  flags: number;
  version: number;
  dataBlockSize: number;
  /** The data space map's nr_blocks; thin_dump prints 0 for a metadata snapshot (it has no space maps). */
  nrDataBlocks: number;
}

/** One `<device>` with its mappings expanded: block i maps virtual `virt[i]` to `data[i]` at `time[i]`. */
export interface DumpDevice {
  thinId: number;
  mappedBlocks: number;
  transactionId: bigint;
  creationTime: number;
  snapshottedTime: number;
  mappings: { virt: number[]; data: number[]; time: number[] };
}

export interface ThinDumpXml {
  superblock: DumpSuperblock;
  devices: DumpDevice[];
}

function attributes(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of text.matchAll(/([a-z_]+)="([^"]*)"/g)) m.set(a[1]!, a[2]!);
  return m;
}

function need(attrs: Map<string, string>, tag: string, key: string): number {
  const v = attrs.get(key);
  if (v === undefined) throw new Error(`thin_dump: <${tag}> without ${key}`);
  return decimal(v, `thin_dump ${tag} ${key}`);
}

/** thin_dump's XML (single_mapping and range_mapping, ranges expanded block by block). */
export function parseThinDumpXml(xml: string): ThinDumpXml {
  let superblock: DumpSuperblock | null = null;
  const devices: DumpDevice[] = [];
  let current: DumpDevice | null = null;
  for (const m of xml.matchAll(/<(\/?)([a-z_]+)\b([^>]*?)(\/?)>/g)) {
    const [, closing, tag, body] = m as unknown as [string, string, string, string, string];
    if (closing === '/') {
      if (tag === 'device') current = null;
      continue;
    }
    const a = attributes(body);
    switch (tag) {
      case 'superblock':
        superblock = {
          time: need(a, tag, 'time'),
          transactionId: BigInt(need(a, tag, 'transaction')),
          flags: need(a, tag, 'flags'),
          version: need(a, tag, 'version'),
          dataBlockSize: need(a, tag, 'data_block_size'),
          nrDataBlocks: need(a, tag, 'nr_data_blocks'),
        };
        break;
      case 'device':
        current = {
          thinId: need(a, tag, 'dev_id'),
          mappedBlocks: need(a, tag, 'mapped_blocks'),
          transactionId: BigInt(need(a, tag, 'transaction')),
          creationTime: need(a, tag, 'creation_time'),
          snapshottedTime: need(a, tag, 'snap_time'),
          mappings: { virt: [], data: [], time: [] },
        };
        devices.push(current);
        break;
      case 'single_mapping':
      case 'range_mapping': {
        if (!current) throw new Error(`thin_dump: <${tag}> outside a <device>`);
        const single = tag === 'single_mapping';
        const origin = need(a, tag, single ? 'origin_block' : 'origin_begin');
        const data = need(a, tag, single ? 'data_block' : 'data_begin');
        const length = single ? 1 : need(a, tag, 'length');
        const time = need(a, tag, 'time');
        for (let i = 0; i < length; i++) {
          current.mappings.virt.push(origin + i);
          current.mappings.data.push(data + i);
          current.mappings.time.push(time);
        }
        break;
      }
      default:
        throw new Error(`thin_dump: an element this parser does not know: <${tag}${body}>`);
    }
  }
  if (!superblock) throw new Error(`thin_dump printed no <superblock>:\n${xml.slice(0, 2000)}`);
  return { superblock, devices };
}

export type RootChoice = 'superblock' | 'held';

/** What thin_ls would print, computed by our reader. */
export function ourThinLs(blocks: MetadataBlocks, root: RootChoice): ThinLsRow[] {
  return readThinUsage(blocks, { root }).devices.map((d) => ({
    thinId: d.thinId,
    mappedBlocks: d.mappedBlocks,
    exclusiveBlocks: d.exclusiveBlocks,
    sharedBlocks: d.sharedBlocks,
    transactionId: d.transactionId,
    creationTime: d.creationTime,
    snapshottedTime: d.snapshottedTime,
  }));
}

/** What thin_dump would print, computed by our reader (forEachMapping over each device). */
export function ourThinDump(blocks: MetadataBlocks, root: RootChoice): ThinDumpXml {
  const md = readThinDevices(blocks, { root });
  const r = md.roots;
  return {
    superblock: {
      time: r.time,
      transactionId: r.transactionId,
      flags: r.flags,
      version: r.version,
      dataBlockSize: r.dataBlockSize,
      nrDataBlocks: r.dataSpaceMapRoot.nrBlocks,
    },
    devices: md.devices.map((d) => {
      const mappings: DumpDevice['mappings'] = { virt: [], data: [], time: [] };
      forEachMapping(blocks, r, d.thinId, (virt, data, time) => {
        mappings.virt.push(virt);
        mappings.data.push(data);
        mappings.time.push(time);
      });
      return {
        thinId: d.thinId,
        mappedBlocks: d.mappedBlocks,
        transactionId: d.transactionId,
        creationTime: d.creationTime,
        snapshottedTime: d.snapshottedTime,
        mappings,
      };
    }),
  };
}

/** Number of mappings in a dump (the tests assert a history made the trees it meant to). */
export function mappingCount(dump: ThinDumpXml): number {
  return dump.devices.reduce((n, d) => n + d.mappings.virt.length, 0);
}
