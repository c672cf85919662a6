// P3: cold CLI, whole-process wall time of the INSTALLED package: `npm pack` of this tree installed
// with `npm install -g --prefix` (bench/install-package.sh, run on the host by bench/run.sh), its
// bin/devmapper run with that bin folder on PATH, as a user runs it. `devmapper dm ls` against
// `node -e 0` (the floor of any Node CLI) and `dmsetup ls`, interleaved round by round.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Report } from './report.js';
import { BUILD_DIR, PROJECT, wallMs } from './run-process.js';
import { afterWarmup, fmt, median, perRound, ratio } from './stats.js';

/** Where bench/install-package.sh installs the package. */
export const PREFIX = join(BUILD_DIR, 'p3-prefix');
const BUNDLE = join('lib', 'node_modules', 'devmapper', 'dist', 'cli', 'devmapper.cjs');

export interface Installed {
  /** The prefix's bin/devmapper (npm's link to the package's `bin`). */
  bin: string;
  /** The environment to run it in: that bin folder first on PATH, no NODE_OPTIONS. */
  env: NodeJS.ProcessEnv;
  /** Whether the installed bundle is this tree's dist/cli/devmapper.cjs, byte for byte. */
  current: boolean;
}

/** The installed package at `prefix`; throws when bench/install-package.sh has not made it. */
export function installed(prefix: string): Installed {
  const bin = join(prefix, 'bin', 'devmapper');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run bench/install-package.sh on the host first (bench/run.sh does)`);
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH ?? ''}` };
  // The bench itself may run with a loader: the CLI as a user starts it.
  delete env.NODE_OPTIONS;
  const built = join(PROJECT, 'dist', 'cli', 'devmapper.cjs');
  const current = existsSync(built) && readFileSync(join(prefix, BUNDLE)).equals(readFileSync(built));
  return { bin, env, current };
}

export function benchCli(report: Report, rounds: number): Record<string, number> {
  // The prefix is copied to the guest's /tmp (a tmpfs) first: the project folder reaches a guest
  // through its host file system, where every open, stat and read is a trip to the host, not what
  // a package installed on a local disk (its pages cached after the first run) costs.
  const copy = mkdtempSync(join(tmpdir(), 'devmapper-p3-'));
  try {
    cpSync(PREFIX, copy, { recursive: true, verbatimSymlinks: true });
    const pkg = installed(copy);
    const progs: [string, string, string[]][] = [
      ['`devmapper dm ls`', pkg.bin, ['dm', 'ls']],
      ['`node -e 0`', process.execPath, ['-e', '0']],
      ['`devmapper --version`', pkg.bin, ['--version']],
      ['`dmsetup ls`', 'dmsetup', ['ls']],
    ];
    const times = new Map<string, number[]>(progs.map(([l]) => [l, []]));
    for (let r = 0; r < rounds; r++) for (const [label, cmd, args] of progs) times.get(label)!.push(wallMs(cmd, args, pkg.env));
    const med = Object.fromEntries(progs.map(([l]) => [l, median(afterWarmup(times.get(l)!))])) as Record<string, number>;
    const node = med['`node -e 0`']!;
    const s = report.section('P3 cold CLI, whole-process wall time (the installed package)', ['command', 'ms', 'vs `node -e 0`']);
    for (const [l] of progs) s.rows.push([l, fmt(med[l]!), ratio(med[l]!, node)]);
    s.notes.push(
      `${rounds - 1} rounds after a warm-up, median. devmapper: the package as \`npm install -g --prefix\` installs it (bench/install-package.sh), copied to the guest's tmpfs, run through PATH; its bundle is ${pkg.current ? "this tree's dist/ build" : 'NOT the same as dist/ (the install is stale, or dist/ changed since)'}. stdout and stderr are not terminals (/dev/null, a pipe).`,
      '`devmapper --version`: start-up and the bundle alone (no koffi, no device-mapper); `dm ls` adds koffi, the dm module and its ioctls.',
      report.figure({
        key: 'p3.cli_vs_node',
        label: 'P3 cold `devmapper dm ls` (installed) / `node -e 0`, wall time',
        target: { op: '<=', value: 1.3 },
        rounds: perRound(afterWarmup(times.get('`devmapper dm ls`')!), afterWarmup(times.get('`node -e 0`')!)),
      }),
    );
    return med;
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}
