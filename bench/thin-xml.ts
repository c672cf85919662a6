// Pool metadata for bench P5 without writing a block through the kernel: thin_dump's XML for a
// pool of snapshot families (thin_restore turns it into metadata), and the per-device usage that
// XML implies, counted here as a third opinion beside thin_ls and our reader.
import { closeSync, openSync, writeSync } from 'node:fs';
import { prng } from '../test/support/prng.js';

export interface PoolShape {
  /** Thin devices in the pool. */
  devices: number;
  /** Mapped blocks summed over every device (rounded to a multiple of `devices`). */
  mappings: number;
  /** Devices per family: one origin and its snapshots. */
  family: number;
  /** PRNG seed: the same shape and seed make the same XML. */
  seed: number;
}

export interface ExpectedUsage {
  thinId: number;
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
}

export interface GeneratedPool {
  devices: ExpectedUsage[];
  mappings: number;
  /** XML elements: range_mapping and single_mapping. */
  ranges: number;
  singles: number;
  nrDataBlocks: number;
  /** Data block size in sectors (64 KiB). */
  dataBlockSize: number;
}

interface Mappings {
  virt: Uint32Array;
  data: Uint32Array;
  time: Uint32Array;
}

const DATA_BLOCK_SIZE = 128;

/**
 * Writes the XML to `path`. Each family: an origin of runs (mean 8 blocks, some single) spread
 * over its virtual space with gaps; each snapshot maps the origin's blocks and rewrote ~10 % of
 * them since (exclusive to it); after the last snapshot the origin rewrote ~5 % (exclusive to the
 * origin, its old blocks then shared by the snapshots only).
 */
export function writeThinXml(path: string, shape: PoolShape): GeneratedPool {
  const rand = prng(shape.seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const per = Math.max(1, Math.round(shape.mappings / shape.devices));
  let nextData = 0;
  const fresh = (n: number): number => {
    const b = nextData;
    nextData += n + (rand() < 0.1 ? int(4) : 0);
    return b;
  };
  // Rewrites a few runs of m's blocks to fresh data blocks at `time`.
  const rewrite = (m: Mappings, fraction: number, time: number): void => {
    let left = Math.max(1, Math.round(per * fraction));
    while (left > 0) {
      const len = Math.min(left, 1 + int(8));
      const at = int(Math.max(1, per - len + 1));
      const d = fresh(len);
      for (let i = 0; i < len && at + i < per; i++) {
        m.data[at + i] = d + i;
        m.time[at + i] = time;
      }
      left -= len;
    }
  };

  const families: Mappings[][] = [];
  for (let first = 0; first < shape.devices; first += shape.family) {
    const size = Math.min(shape.family, shape.devices - first);
    const origin: Mappings = { virt: new Uint32Array(per), data: new Uint32Array(per), time: new Uint32Array(per) };
    let v = int(64);
    for (let i = 0; i < per; ) {
      const len = Math.min(per - i, rand() < 0.2 ? 1 : 1 + int(15));
      const d = fresh(len);
      for (let k = 0; k < len; k++, i++) {
        origin.virt[i] = v + k;
        origin.data[i] = d + k;
      }
      v += len + (rand() < 0.5 ? 0 : 1 + int(32));
    }
    const family: Mappings[] = [origin];
    for (let s = 1; s < size; s++) {
      const snap = { virt: origin.virt, data: origin.data.slice(), time: origin.time.slice() };
      rewrite(snap, 0.1, s);
      family.push(snap);
    }
    rewrite(origin, 0.05, size);
    families.push(family);
  }

  // Reference counts of data blocks over every device's mappings: exclusive = count 1.
  const refs = new Uint16Array(nextData);
  for (const f of families) for (const m of f) for (const d of m.data) refs[d] = (refs[d] as number) + 1;

  const fd = openSync(path, 'w');
  let buf = '';
  const out = (s: string): void => {
    buf += s;
    if (buf.length > 1 << 20) {
      writeSync(fd, buf);
      buf = '';
    }
  };
  const devices: ExpectedUsage[] = [];
  let ranges = 0;
  let singles = 0;
  const maxTime = shape.family;
  try {
    out(`<superblock uuid="" time="${maxTime}" transaction="1" data_block_size="${DATA_BLOCK_SIZE}" nr_data_blocks="${nextData}">\n`);
    families.forEach((family, fi) => {
      family.forEach((m, s) => {
        const thinId = fi * shape.family + s;
        let exclusive = 0;
        for (const d of m.data) if (refs[d] === 1) exclusive++;
        devices.push({ thinId, mappedBlocks: per, exclusiveBlocks: exclusive, sharedBlocks: per - exclusive });
        const snapTime = s === 0 ? family.length - 1 : s;
        out(`  <device dev_id="${thinId}" mapped_blocks="${per}" transaction="1" creation_time="${s}" snap_time="${snapTime}">\n`);
        for (let i = 0; i < per; ) {
          let j = i + 1;
          while (
            j < per &&
            m.virt[j] === (m.virt[i] as number) + (j - i) &&
            m.data[j] === (m.data[i] as number) + (j - i) &&
            m.time[j] === m.time[i]
          )
            j++;
          if (j - i === 1) {
            singles++;
            out(`    <single_mapping origin_block="${m.virt[i]}" data_block="${m.data[i]}" time="${m.time[i]}"/>\n`);
          } else {
            ranges++;
            out(`    <range_mapping origin_begin="${m.virt[i]}" data_begin="${m.data[i]}" length="${j - i}" time="${m.time[i]}"/>\n`);
          }
          i = j;
        }
        out('  </device>\n');
      });
    });
    out('</superblock>\n');
    writeSync(fd, buf);
  } finally {
    closeSync(fd);
  }
  return {
    devices,
    mappings: per * devices.length,
    ranges,
    singles,
    nrDataBlocks: nextData,
    dataBlockSize: DATA_BLOCK_SIZE,
  };
}
