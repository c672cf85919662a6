// Encode/decode alone, no kernel: dm_ioctl headers, a 2,000-target table (TABLE_LOAD encoding and
// a TABLE_STATUS-style reply decoded), a 10,000-entry name list. Operations per second.
import { decodeDmIoctl, encodeDmIoctl, DM_IOCTL_SIZE } from '../src/structs/dm-ioctl.js';
import { DmNameListView, decodeNameList, encodeNameList } from '../src/structs/name-list.js';
import { decodeTargetSpecs, encodeTargetSpecs, encodeTargetSpecsReply, type DmTargetSpec } from '../src/structs/target-spec.js';
import { formatTargetParams, parseTable, type Target } from '../src/dm/targets.js';
import { formatTableLine } from '../src/dm/targets.js';
import type { Report } from './report.js';
import { afterWarmup, fmt, median, msSince, nowNs, SCALE } from './stats.js';
import { sectors } from '../src/structs/units.js';

/** ops/s of `fn`: rounds of ~150 ms each (scaled), median after the warm-up round. */
function opsPerSecond(fn: () => unknown, rounds: number): number {
  const rates: number[] = [];
  const budgetMs = 150 * SCALE;
  for (let r = 0; r < rounds; r++) {
    let ops = 0;
    const t0 = nowNs();
    let ms = 0;
    do {
      for (let i = 0; i < 8; i++) fn();
      ops += 8;
      ms = msSince(t0);
    } while (ms < budgetMs);
    rates.push(ops / (ms / 1000));
  }
  return median(afterWarmup(rates));
}

export function benchCodec(report: Report, rounds: number): Record<string, number> {
  const header = {
    version: [4, 0, 0] as const,
    flags: 0x4,
    event_nr: 0x430000,
    dev: 0xfc01n,
    name: 'bench-device-name',
    uuid: 'LVM-0123456789abcdef',
    target_count: 1,
  };
  const headerBuf = encodeDmIoctl(header, undefined, DM_IOCTL_SIZE);
  const targets: Target[] = Array.from({ length: 2000 }, (_, i) => ({
    type: 'linear' as const,
    startSector: sectors(BigInt(i) * 2048n),
    lengthSectors: sectors(2048n),
    device: '7:0',
    offsetSectors: sectors(BigInt(i) * 4096n),
  }));
  const specsIn = targets.map((t) => ({
    sector_start: t.startSector,
    length: t.lengthSectors,
    target_type: t.type,
    params: formatTargetParams(t),
  }));
  const reply: DmTargetSpec[] = specsIn.map((sp) => ({ ...sp, status: 0 }));
  const replyBuf = encodeTargetSpecsReply(reply);
  const tableText = targets.map((t) => formatTableLine(t)).join('\n');
  const names = Array.from({ length: 10000 }, (_, i) => ({
    dev: BigInt(0xfd00 + i + 1),
    name: `bench-list-${String(i).padStart(5, '0')}`,
    event_nr: 0,
    flags: 0,
  }));
  const nameBuf = encodeNameList(names, { withTail: true });
  const cases: [string, () => unknown][] = [
    ['dm_ioctl header encode (312 B)', () => encodeDmIoctl(header, undefined, DM_IOCTL_SIZE)],
    ['dm_ioctl header decode', () => decodeDmIoctl(headerBuf)],
    [
      '2,000-target table: Target[] -> TABLE_LOAD payload',
      () =>
        encodeTargetSpecs(
          targets.map((t) => ({
            sector_start: t.startSector,
            length: t.lengthSectors,
            target_type: t.type,
            params: formatTargetParams(t),
          })),
        ),
    ],
    ['2,000-target table: reply payload -> specs', () => decodeTargetSpecs(replyBuf, 2000)],
    ['2,000-line table text -> Target[] (parseTable)', () => parseTable(tableText)],
    ['10,000-entry name list decode', () => decodeNameList(nameBuf)],
    ['10,000-entry name list: names only (DmNameListView)', () => DmNameListView.of(nameBuf).names()],
    ['10,000-entry name list: index and find the last name', () => DmNameListView.of(nameBuf).indexOf('bench-list-09999')],
  ];
  const s = report.section('Encode/decode alone (no kernel)', ['operation', 'ops/s', 'µs/op']);
  const out: Record<string, number> = {};
  for (const [label, fn] of cases) {
    const v = opsPerSecond(fn, rounds);
    out[label] = v;
    s.rows.push([label, fmt(v), fmt(1e6 / v)]);
  }
  s.notes.push(`Payload sizes: table ${replyBuf.length.toLocaleString('en-US')} B, name list ${nameBuf.length.toLocaleString('en-US')} B.`);
  return out;
}
