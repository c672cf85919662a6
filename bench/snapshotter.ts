// Snapshotter: containerd's snapshots API served by ours, by containerd 1.6.20's devmapper
// snapshotter (on an identical pool) and by its overlayfs snapshotter, all three driven by one Go
// client through containerd's snapshots/proxy over a unix socket, rounds interleaved in one boot.
// The client times each call; here the rounds become latencies, ops/s and per-round ratios.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from './report.js';
import {
  CLIENT_BIN,
  kernelObjects,
  overlayAvailable,
  POOL,
  SERVER_BIN,
  type Server,
  type ServerName,
  startContainerdDevmapper,
  startContainerdOverlay,
  startOurs,
  stopProcess,
} from './snapshotter-servers.js';
import { afterWarmup, fmt, median, msSince, nowNs, percentile, scaled } from './stats.js';

/** One client run: operation -> ms of each call. */
type Round = Map<string, number[]>;

const LAYERS = 16;
const UNPACK = `unpack-${LAYERS}`;
const OPS = [
  'prepare',
  'prepare-parent',
  'mounts',
  'commit',
  'view',
  'remove',
  'mount+write+umount',
  'unpack-layer',
  'remove-layer',
  UNPACK,
];
const NAMES: ServerName[] = ['ours', 'containerd devmapper', 'containerd overlayfs'];

function runClient(server: Server, round: number, count: number): Promise<Round> {
  const args = ['-address', server.socket, '-round', `${round}`, '-count', `${count}`, '-layers', `${LAYERS}`, '-mnt', server.mnt];
  const proc = spawn(CLIENT_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr.on('data', (b: Buffer) => {
    err = (err + b.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`client against ${server.name}: exit ${code ?? signal}: ${err.trim()}`));
      const r: Round = new Map();
      for (const line of out.split('\n').filter(Boolean)) {
        const { op, ms } = JSON.parse(line) as { op: string; ms: number[] };
        r.set(op, ms);
      }
      resolve(r);
    });
  });
}

/** Median wall time of a short command run `n` times (what one exec costs in this guest). */
function execMs(cmd: string, args: readonly string[], n: number): number {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowNs();
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    if (r.status !== 0) return Number.NaN;
    ms.push(msSince(t0));
  }
  return median(ms);
}

const opMedian = (r: Round, op: string): number => median(r.get(op) ?? []);
/** Prepare (no parent) + Commit + Remove: one round's medians summed. */
const pcr = (r: Round): number => opMedian(r, 'prepare') + opMedian(r, 'commit') + opMedian(r, 'remove');

/** "median (min–max)" of per-round ratios. */
function spread(xs: readonly number[]): string {
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) return 'n/a';
  return `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
}

export async function benchSnapshotter(report: Report, rounds: number): Promise<void> {
  for (const bin of [SERVER_BIN, CLIENT_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} missing: bench/run.sh builds it with scripts/containerd/go`);
  }
  const count = scaled(4);
  const costs = {
    dmsetup: execMs('dmsetup', ['version'], 5),
    mkfs: Number.NaN,
  };
  const before = new Set(kernelObjects());
  const work = mkdtempSync(join(tmpdir(), 'dm-bench-snap-'));
  const servers: Server[] = [];
  const failed = new Map<ServerName, string>();
  const byServer = new Map<ServerName, Round[]>(NAMES.map((n) => [n, []]));
  const cleanup: string[] = [];
  try {
    // What containerd's devmapper runs for every parentless Prepare, once, on a file of the base size.
    const img = join(work, 'mkfs-probe.img');
    const t0 = nowNs();
    const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', img, POOL.baseSize], {
      stdio: 'ignore',
    });
    costs.mkfs = mk.status === 0 ? msSince(t0) : Number.NaN;
    rmSync(img, { force: true });

    const starters: [ServerName, () => Promise<Server>][] = [
      ['ours', () => startOurs(work)],
      ['containerd devmapper', () => startContainerdDevmapper(work)],
      [
        'containerd overlayfs',
        () => (overlayAvailable() ? startContainerdOverlay(work) : Promise.reject(new Error('this guest kernel cannot mount overlayfs'))),
      ],
    ];
    for (const [name, start] of starters) {
      try {
        servers.push(await start());
      } catch (err) {
        failed.set(name, err instanceof Error ? err.message.split('\n')[0]! : String(err));
      }
    }
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round: whoever runs right after another pays for its deferred work.
      const order = servers.map((_, k) => servers[(k + r) % servers.length]!);
      for (const s of order) {
        if (failed.has(s.name)) continue;
        process.stderr.write(`bench: snapshotter round ${r + 1}/${rounds}: ${s.name}\n`);
        try {
          byServer.get(s.name)!.push(await runClient(s, r, count));
        } catch (err) {
          failed.set(s.name, err instanceof Error ? err.message.split('\n')[0]! : String(err));
        }
      }
    }
  } finally {
    for (const s of servers) {
      await stopProcess(s.proc);
      try {
        s.teardown();
      } catch (err) {
        cleanup.push(`${s.name}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      }
    }
    rmSync(work, { recursive: true, force: true });
  }
  const leaked = kernelObjects().filter((o) => !before.has(o));

  const measured = NAMES.filter((n) => !failed.has(n) && byServer.get(n)!.length === rounds);
  const kept = new Map(measured.map((n) => [n, afterWarmup(byServer.get(n)!)]));
  const pooled = (n: ServerName, op: string): number[] => (kept.get(n) ?? []).flatMap((r) => r.get(op) ?? []);

  const lat = report.section('Snapshotter: ms per call, median / p90, and calls/s, through containerd’s snapshots/proxy', [
    'operation',
    ...NAMES,
  ]);
  for (const op of OPS) {
    lat.rows.push([
      op,
      ...NAMES.map((n) => {
        const xs = pooled(n, op);
        if (!xs.length) return 'n/a';
        const perSec = (xs.length * 1000) / xs.reduce((a, b) => a + b, 0);
        return `${fmt(median(xs))} / ${fmt(percentile(xs, 90))} ms, ${fmt(perSec)}/s`;
      }),
    ]);
  }

  const ratioOver = (a: ServerName, b: ServerName, f: (r: Round) => number): number[] => {
    const ra = kept.get(a) ?? [];
    const rb = kept.get(b) ?? [];
    return ra.length && ra.length === rb.length ? ra.map((r, i) => f(r) / f(rb[i]!)) : [];
  };
  const measures: [string, (r: Round) => number][] = [
    ['Prepare + Commit + Remove', pcr],
    ...['prepare', 'prepare-parent', 'mounts', 'commit', 'view', 'remove'].map((op): [string, (r: Round) => number] => [
      op,
      (r) => opMedian(r, op),
    ]),
    [`${UNPACK} (Prepare, mount, write, umount, Commit per layer)`, (r) => opMedian(r, UNPACK)],
  ];
  const rat = report.section('Snapshotter ratios, per round: median (min–max)', [
    'measure',
    'containerd devmapper ÷ ours',
    'ours ÷ containerd overlayfs',
  ]);
  for (const [label, f] of measures) {
    rat.rows.push([label, spread(ratioOver('containerd devmapper', 'ours', f)), spread(ratioOver('ours', 'containerd overlayfs', f))]);
  }
  const dm = ratioOver('containerd devmapper', 'ours', pcr);
  const ov = ratioOver('ours', 'containerd overlayfs', pcr);
  rat.notes.push(
    `${rounds - 1} rounds after a warm-up, servers in rotated order each round; a round = ${count} × (Prepare, Mounts, mount+write 64 KiB+umount, Commit, Prepare on it, View of it, Remove ×3) then a ${LAYERS}-layer chain (Prepare on the previous layer, mount, write, umount, Commit) removed top-down.`,
    `Pools: ${POOL.dataBytes / 2 ** 20} MiB data + ${POOL.metadataBytes / 2 ** 20} MiB metadata sparse loop files on the guest's tmpfs, base ${POOL.baseSize}, the same thin-pool table for both; overlayfs root on the same tmpfs.`,
    `Targets on Prepare + Commit + Remove: ours ≥ 20× faster than containerd devmapper: ${dm.length ? (median(dm) >= 20 ? 'met' : 'MISSED') : 'not measured'}; within 2× of overlayfs: ${ov.length ? (median(ov) <= 2 ? 'met' : 'MISSED') : 'not measured'}.`,
    `One \`dmsetup version\` exec in this guest: ${fmt(costs.dmsetup)} ms; \`mkfs.ext4\` of ${POOL.baseSize} as containerd runs it (lazy init off): ${fmt(costs.mkfs)} ms.`,
    ...[...failed].map(([n, why]) => `${n}: not measured: ${why}`),
    ...cleanup.map((c) => `teardown failed: ${c}`),
    leaked.length ? `LEFT BEHIND after teardown: ${leaked.join(', ')}` : 'Teardown: no dm or loop device left behind.',
  );
}
