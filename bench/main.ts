// The bench: run where device-mapper is (bench/run.sh boots the guest when the host has none),
// every part in this one process and boot so that ratios compare like with like. Prints the table
// and writes bench/results/latest.md.
import { readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { benchCodec } from './codec.js';
import { benchSnapshotCycle } from './p1-cycle.js';
import { benchList } from './p2-list.js';
import { benchCli } from './p3-cli.js';
import { benchLayers } from './p4-layers.js';
import { benchMetadata } from './p5-metadata.js';
import { benchSnapshotter } from './snapshotter.js';
import { createPool, destroyPool } from './pool.js';
import { OursProcess } from './ours.js';
import { Report } from './report.js';
import { PROJECT } from './run-process.js';
import { SCALE, scaled } from './stats.js';
import { deviceName } from '../src/dm/names.js';

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
const loadavg = (): string => {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
};

function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

async function part(report: Report, title: string, fn: () => Promise<unknown> | unknown): Promise<void> {
  const t0 = Date.now();
  process.stderr.write(`bench: ${title}...\n`);
  try {
    await fn();
  } catch (err) {
    const s = report.section(`${title}: FAILED`, ['error']);
    s.rows.push([String(err instanceof Error ? err.message : err).split('\n')[0] ?? '']);
    process.stderr.write(`bench: ${title} failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  }
  process.stderr.write(`bench: ${title} took ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

async function main(): Promise<void> {
  const only = process.env.DEVMAPPER_BENCH_ONLY?.split(',');
  const want = (p: string) => !only || only.includes(p);
  const report = new Report();
  const rounds = Math.max(3, scaled(7));
  const guestKind = process.env.DEVMAPPER_GUEST;
  const guest = guestKind ? `${guestKind === 'qemu' ? 'QEMU/TCG' : 'user-mode-linux'} guest (${guestKind})` : 'host';
  const started = new Date().toISOString();
  const loadStart = loadavg();
  const kernelParts = ['p1', 'p2', 'p4'].some(want);
  const dm = kernelParts ? DeviceMapper.open({ udev: 'off' }) : undefined;
  const worker = kernelParts ? await OursProcess.start() : undefined;
  const t0 = Date.now();
  try {
    if (want('codec')) await part(report, 'codec', () => benchCodec(report, rounds));
    if (want('p3')) await part(report, 'P3', () => benchCli(report, Math.max(4, scaled(9))));
    if (dm && worker && (want('p1') || want('p4'))) {
      const pool = await createPool(dm, deviceName(`bench-pool-${process.pid}`), { mkfs: want('p4') });
      try {
        if (want('p1')) await part(report, 'P1', () => benchSnapshotCycle(report, dm, worker, pool, rounds));
        if (want('p4')) await part(report, 'P4', () => benchLayers(report, worker, pool));
      } finally {
        await destroyPool(dm, pool);
      }
    }
    if (dm && worker && want('p2')) await part(report, 'P2', () => benchList(report, dm, worker, Math.max(3, scaled(6))));
    if (want('p5')) await part(report, 'P5', () => benchMetadata(report, Math.max(3, scaled(5))));
    if (want('snapshotter')) await part(report, 'Snapshotter', () => benchSnapshotter(report, Math.max(3, scaled(4))));
  } finally {
    await worker?.stop();
    dm?.close();
  }
  const hostLoad = process.env.DEVMAPPER_BENCH_HOST_LOAD;
  const head = [
    '## devmapper bench',
    '',
    `- Run: ${started}, ${((Date.now() - t0) / 1000).toFixed(0)} s, scale ${SCALE}, on ${guest}.`,
    `- Kernel: \`${release()}\`${dm ? ` (device-mapper ${dm.driverVersion.join('.')})` : ''}; Node ${process.version}.`,
    `- CPU: ${cpuModel()} x ${availableParallelism()}${process.env.DEVMAPPER_BENCH_HOST_CPU ? ` (host: ${process.env.DEVMAPPER_BENCH_HOST_CPU})` : ''}.`,
    `- Load average at start / end: ${loadStart} / ${loadavg()}${hostLoad ? `; host: ${hostLoad}` : ''}.`,
    '- Every figure: median of rounds after a warm-up round; programs interleaved round by round.',
  ].join('\n');
  const text = `${head}\n\n${report.render()}\n`;
  process.stdout.write(`\n${text}`);
  const dir = join(PROJECT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = only ? join(dir, 'partial.md') : join(dir, 'latest.md');
  writeAtomic(file, text);
  process.stderr.write(`bench: wrote ${file}\n`);
  // One boot of several (`--repeat N`): its figures, for bench/boots.ts to put side by side.
  const boot = process.env.DEVMAPPER_BENCH_BOOT;
  if (boot) {
    const bootsDir = join(dir, 'boots');
    mkdirSync(bootsDir, { recursive: true });
    const record = {
      boot: Number(boot),
      started,
      guest,
      kernel: release(),
      cpus: availableParallelism(),
      loadStart,
      figures: report.figures,
    };
    writeAtomic(join(bootsDir, `boot-${boot}.json`), `${JSON.stringify(record, null, 1)}\n`);
  }
}

await main();
