// P3 on the host that runs the bench (bench/run.sh runs this before it boots a guest): the installed
// package's cold `devmapper dm ls` against `node -e 0` where a user would run it, on a real kernel
// and disk. A host without device-mapper fails `dm ls` at the missing control node (exit 1, ENODEV)
// after the whole start-up and the dm module, but before koffi loads and any ioctl: that failing
// run is the figure there, an under-estimate by koffi's load (the `require('koffi')` row shows it).
//   node --import tsx bench/p3-host.ts [ROUNDS]   prints markdown; the figures as JSON in
//   bench/results/boots/host-p3.json (beside the boots' own, git-ignored)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installed, PREFIX } from './p3-cli.js';
import { Report } from './report.js';
import { PROJECT } from './run-process.js';
import { afterWarmup, fmt, median, msSince, nowNs, perRound, ratio, scaled } from './stats.js';

interface Prog {
  label: string;
  cmd: string;
  args: string[];
  /** The exit statuses that count as the program's run. */
  ok: readonly number[];
}

function timed(p: Prog, env: NodeJS.ProcessEnv): { ms: number; status: number | null; stderr: string } {
  const t0 = nowNs();
  const r = spawnSync(p.cmd, p.args, { stdio: ['ignore', 'ignore', 'pipe'], env, cwd: PROJECT, encoding: 'utf8' });
  const ms = msSince(t0);
  if (r.status === null || !p.ok.includes(r.status)) {
    throw new Error(`${p.cmd} ${p.args.join(' ')}: exit ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  }
  return { ms, status: r.status, stderr: r.stderr };
}

const rounds = Number(process.argv[2]) || Math.max(8, scaled(40));
const pkg = installed(PREFIX);
const koffi = join(PREFIX, 'lib', 'node_modules', 'devmapper', 'node_modules', 'koffi');
const progs: Prog[] = [
  { label: '`devmapper dm ls`', cmd: pkg.bin, args: ['dm', 'ls'], ok: [0, 1] },
  { label: '`node -e 0`', cmd: process.execPath, args: ['-e', '0'], ok: [0] },
  { label: '`devmapper --version`', cmd: pkg.bin, args: ['--version'], ok: [0] },
  { label: '`devmapper loop ls`', cmd: pkg.bin, args: ['loop', 'ls'], ok: [0] },
  { label: "`node -e require('koffi')`", cmd: process.execPath, args: ['-e', `require(${JSON.stringify(koffi)})`], ok: [0] },
];
// dm ls either lists (a host with device-mapper, as root) or fails for the want of it; nothing else.
const probe = timed(progs[0]!, pkg.env);
const dmFails = probe.status !== 0;
if (dmFails && !/ENODEV|EACCES|EPERM/.test(probe.stderr)) throw new Error(`devmapper dm ls: ${probe.stderr.trim()}`);

const times = new Map<string, number[]>(progs.map((p) => [p.label, []]));
for (let r = 0; r < rounds; r++) for (const p of progs) times.get(p.label)!.push(timed(p, pkg.env).ms);
const med = Object.fromEntries(progs.map((p) => [p.label, median(afterWarmup(times.get(p.label)!))])) as Record<string, number>;
const node = med['`node -e 0`']!;

const report = new Report();
const s = report.section('P3 on the host: cold CLI, whole-process wall time (the installed package)', ['command', 'ms', 'vs `node -e 0`']);
for (const p of progs) s.rows.push([p.label, fmt(med[p.label]!), ratio(med[p.label]!, node)]);
const why = dmFails
  ? `dm ls FAILS here (${probe.stderr.trim().split(':').slice(1, 2).join('').trim() || 'no device-mapper'}): start-up, the bundle and the dm module, no koffi and no ioctl; add koffi's load (the require('koffi') row less \`node -e 0\`) for a full run`
  : 'dm ls lists the devices (device-mapper here)';
s.notes.push(
  `${rounds - 1} rounds after a warm-up, median; host load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (after). The package from bench/install-package.sh at ${PREFIX}, run through PATH; its bundle is ${pkg.current ? "this tree's dist/ build" : 'NOT the same as dist/'}.`,
  `${why}. \`loop ls\` reads sysfs only (no koffi) when no loop device needs a status.`,
  report.figure({
    key: 'p3.host_cli_vs_node',
    label: `P3 host: cold \`devmapper dm ls\`${dmFails ? ' (fails: no device-mapper)' : ''} (installed) / \`node -e 0\`, wall time`,
    target: { op: '<=', value: 1.3 },
    rounds: perRound(afterWarmup(times.get('`devmapper dm ls`')!), afterWarmup(times.get('`node -e 0`')!)),
  }),
);
const md = report.render();
const boots = join(import.meta.dirname, 'results', 'boots');
mkdirSync(boots, { recursive: true });
writeFileSync(join(boots, 'host-p3.json'), `${JSON.stringify({ figures: report.figures, medians: med, rounds }, null, 2)}\n`);
process.stdout.write(`${md}\n`);
