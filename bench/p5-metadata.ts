// P5: reading a pool's metadata, per-device mapped / exclusive / shared blocks: our reader against
// thin_ls (thin-provisioning-tools) on the same metadata file, 1,000 thin devices with 10^5 and
// 10^6 mapped blocks. The metadata is made without the kernel: thin_dump's XML of snapshot
// families, written by bench/thin-xml.ts and turned into metadata by thin_restore.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from './report.js';
import { attachLoop, detachLoop, type LoopDevice } from '../src/loop/index.js';
import { BUILD_DIR, PROJECT } from './run-process.js';
import { afterWarmup, fmt, median, msSince, nowNs, scaled } from './stats.js';
import { writeThinXml, type GeneratedPool } from './thin-xml.js';
import { parseUsageTable, usageTable, USAGE_FIELDS } from './thin-usage.js';

const DEVICES = 1000;
const FAMILY = 20;
const MIB = 1024 * 1024;
const TIME = '/usr/bin/time';

interface Program {
  label: string;
  /** Runs once; returns elapsed ms and what it printed. */
  run(): { ms: number; out: string };
  /** The command for a peak RSS measurement (processes only). */
  argv?: [string, string[]];
  /** Reads nothing (the floor of any Node program): its output is not a table. */
  floor?: boolean;
}

function runProcess(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): { ms: number; out: string } {
  const t0 = nowNs();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 64 * MIB, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = msSince(t0);
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(`${cmd} is not on PATH (thin-provisioning-tools: the guest's PATH has it, scripts/vm/lib.sh)`);
  }
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  return { ms, out: r.stdout };
}

/** Peak RSS (KiB) of a whole process by GNU time's %M (its ru_maxrss). */
function peakRssKiB(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, dir: string): number {
  const file = join(dir, 'rss');
  const r = spawnSync(TIME, ['-f', '%M', '-o', file, cmd, ...args], { env, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${TIME} ${cmd}: exit ${r.status ?? r.signal}`);
  return Number(readFileSync(file, 'utf8').trim().split('\n').pop());
}

/** Our process: bench/thin-usage-main.ts bundled into one CommonJS file, koffi external, as the CLI is. */
async function bundleOurs(): Promise<string> {
  const { buildSync } = await import('esbuild');
  mkdirSync(BUILD_DIR, { recursive: true });
  const outfile = join(BUILD_DIR, 'thin-usage.cjs');
  buildSync({
    entryPoints: [join(PROJECT, 'bench', 'thin-usage-main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile,
    external: ['koffi'],
    logLevel: 'warning',
    banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
    define: { 'import.meta.url': '__import_meta_url' },
  });
  return outfile;
}

/**
 * Metadata restored from generated XML onto a loop device over a sparse file: thin_restore and
 * thin_ls open with O_DIRECT, which the guest's tmpfs and hostfs refuse; a loop device takes it on
 * any file, and a pool's metadata is a block device anyway.
 */
async function makeMetadata(dir: string, mappings: number): Promise<Metadata> {
  const xml = join(dir, `pool-${mappings}.xml`);
  const backing = join(dir, `pool-${mappings}.meta`);
  const t0 = nowNs();
  const pool = writeThinXml(xml, { devices: DEVICES, mappings, family: FAMILY, seed: 27022010 });
  // thin_restore writes into an existing device; restored metadata takes ~35 bytes a mapping.
  const fd = openSync(backing, 'w');
  try {
    ftruncateSync(fd, Math.max(8, Math.ceil((mappings * 64) / MIB)) * MIB);
  } finally {
    closeSync(fd);
  }
  const loop = await attachLoop(backing);
  try {
    runProcess('thin_restore', ['-q', '-i', xml, '-o', loop.path], process.env);
  } catch (err) {
    await detachLoop(loop);
    throw err;
  }
  const xmlBytes = statSync(xml).size;
  rmSync(xml);
  return { loop, backing, pool, xmlBytes, ms: msSince(t0) };
}

interface Metadata {
  loop: LoopDevice;
  backing: string;
  pool: GeneratedPool;
  xmlBytes: number;
  ms: number;
}

/** Throws, naming the first row that differs, unless `text` is the generator's counts. */
function expectCounts(who: string, text: string, pool: GeneratedPool): void {
  const got = parseUsageTable(text);
  const fail = (what: string): never => {
    process.exitCode = 1;
    throw new Error(what);
  };
  const want = pool.devices.map((d) => [d.thinId, d.mappedBlocks, d.exclusiveBlocks, d.sharedBlocks]);
  if (got.length !== want.length) fail(`${who} printed ${got.length} devices, the pool has ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g.length !== w.length || g.some((x, k) => x !== w[k])) {
      fail(`${who} differs at row ${i}: ${USAGE_FIELDS.join(',')} = ${g.join(' ')}, the pool has ${w.join(' ')}`);
    }
  }
}

const spread = (xs: readonly number[], digits = 3): string => `${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}`;

export async function benchMetadata(report: Report, rounds: number): Promise<Record<string, number>> {
  const s = report.section('P5 metadata read: per-device mapped / exclusive / shared blocks, ms per read', [
    'mappings',
    'program',
    'ms (median)',
    'ms min–max',
    'vs thin_ls (median of rounds)',
    'vs thin_ls min–max',
    'peak RSS MiB',
  ]);
  const ours = await bundleOurs();
  // No NODE_OPTIONS (the bench runs with tsx's loader): our program starts as a user's would.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const hasTime = existsSync(TIME);
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-bench-meta-'));
  const out: Record<string, number> = {};
  const sizes: string[] = [];
  let identical = 0;
  try {
    for (const mappings of [scaled(100_000), scaled(1_000_000)]) {
      const meta = await makeMetadata(dir, mappings);
      process.stderr.write(`bench: P5 ${mappings} mappings: metadata made in ${(meta.ms / 1000).toFixed(1)} s\n`);
      try {
        const { pool } = meta;
        const file = meta.loop.path;
        const used = statSync(meta.backing).blocks * 512;
        const progs: Program[] = [
          {
            label: '`thin_ls` (process)',
            run: () => runProcess('thin_ls', ['-o', USAGE_FIELDS.join(','), file], process.env),
            argv: ['thin_ls', ['-o', USAGE_FIELDS.join(','), file]],
          },
          {
            label: 'ours (process, node start-up included)',
            run: () => runProcess(process.execPath, [ours, file], env),
            argv: [process.execPath, [ours, file]],
          },
          {
            label: 'ours (in process)',
            run: () => {
              const t0 = nowNs();
              const text = usageTable(file);
              return { ms: msSince(t0), out: text };
            },
          },
          {
            label: '`node -e 0` (process, reads nothing)',
            run: () => runProcess(process.execPath, ['-e', '0'], env),
            argv: [process.execPath, ['-e', '0']],
            floor: true,
          },
        ];
        // The first run of each is checked against the generator's counts; every later run must
        // print the same text again.
        const first = progs.map((p) => {
          const r = p.run();
          if (!p.floor) expectCounts(p.label, r.out, pool);
          return r.out;
        });
        const times = progs.map((): number[] => []);
        for (let r = 0; r < rounds; r++) {
          for (let k = 0; k < progs.length; k++) {
            const i = (k + r) % progs.length;
            const res = progs[i]!.run();
            if (res.out !== first[i]) throw new Error(`${progs[i]!.label} printed something else in round ${r}`);
            times[i]!.push(res.ms);
            process.stderr.write(`bench: P5 ${mappings} round ${r}: ${progs[i]!.label} ${res.ms.toFixed(0)} ms\n`);
          }
        }
        const kept = times.map((t) => afterWarmup(t));
        const base = kept[0]!;
        const rss = progs.map(({ argv }) =>
          hasTime && argv ? Math.max(peakRssKiB(argv[0], argv[1], env, dir), peakRssKiB(argv[0], argv[1], env, dir)) : Number.NaN,
        );
        if (first[0] === first[1]) identical++;
        progs.forEach((p, i) => {
          const ratios = kept[i]!.map((t, r) => t / base[r]!);
          const med = median(kept[i]!);
          out[`${mappings}:${i}`] = med;
          s.rows.push([
            mappings.toLocaleString('en-US'),
            p.label,
            fmt(med),
            spread(kept[i]!),
            median(ratios).toFixed(2),
            `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
            Number.isFinite(rss[i]!) ? (rss[i]! / 1024).toFixed(1) : 'n/a',
          ]);
        });
        sizes.push(
          `${mappings.toLocaleString('en-US')} mappings: ${pool.ranges.toLocaleString('en-US')} range_mapping + ${pool.singles.toLocaleString('en-US')} single_mapping elements (${(meta.xmlBytes / MIB).toFixed(1)} MiB of XML), ${pool.nrDataBlocks.toLocaleString('en-US')} data blocks, metadata ${(used / MIB).toFixed(1)} MiB used of a ${(statSync(meta.backing).size / MIB).toFixed(0)} MiB sparse file on a loop device; generated and restored in ${(meta.ms / 1000).toFixed(1)} s.`,
        );
      } finally {
        await detachLoop(meta.loop);
        rmSync(meta.backing);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  s.notes.push(
    `${DEVICES.toLocaleString('en-US')} thin devices in families of ${FAMILY} (an origin and its snapshots; each snapshot rewrote ~10 % of its blocks, the origin ~5 % after the last snapshot), made by bench/thin-xml.ts as thin_dump's XML and restored with thin_restore.`,
    ...sizes,
    `${rounds - 1} rounds after a warm-up, the programs in rotating order each round; "vs thin_ls" is ours / thin_ls within each round (below 1: faster), its median and range over the rounds.`,
    `Every run prints the same numbers: thin_ls, our process and our in-process read were each checked row by row against the counts the generator computed (the bench fails if one differs), and every later run must print the same text again; our table is byte-identical to thin_ls's at ${identical} of 2 sizes.`,
    "Peak RSS: GNU time's %M (ru_maxrss), the larger of two runs. `node -e 0` is timed in the same rounds: the start-up any Node program pays before reading a block.",
  );
  return out;
}
