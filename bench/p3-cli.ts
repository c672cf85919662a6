// P3: cold CLI, whole-process wall time: `devmapper dm ls` (the compiled dist/ path) against
// `node -e 0` (the floor of any Node CLI) and `dmsetup ls`, interleaved.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Report } from './report.js';
import { PROJECT, wallMs } from './run-process.js';
import { afterWarmup, fmt, median, perRound, ratio } from './stats.js';

export function benchCli(report: Report, rounds: number): Record<string, number> {
  // bin/devmapper runs dist/ only when dist/.built is newer than every file under src/.
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  const built = (): boolean => {
    try {
      return statSync(join(PROJECT, 'dist', '.built')).mtimeMs >= newest(join(PROJECT, 'src'));
    } catch {
      return false;
    }
  };
  const distBefore = built();
  const progs: [string, string, string[]][] = [
    ['`devmapper dm ls`', join(PROJECT, 'bin', 'devmapper'), ['dm', 'ls']],
    ['`node -e 0`', process.execPath, ['-e', '0']],
    ['`dmsetup ls`', 'dmsetup', ['ls']],
  ];
  // No NODE_OPTIONS (the bench itself may run with a loader): the CLI as a user starts it.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const times = new Map<string, number[]>(progs.map(([l]) => [l, []]));
  for (let r = 0; r < rounds; r++) for (const [label, cmd, args] of progs) times.get(label)!.push(wallMs(cmd, args, env));
  const hasDist = distBefore && built();
  const med = Object.fromEntries(progs.map(([l]) => [l, median(afterWarmup(times.get(l)!))])) as Record<string, number>;
  const node = med['`node -e 0`']!;
  const s = report.section('P3 cold CLI, whole-process wall time', ['command', 'ms', 'vs `node -e 0`']);
  for (const [l] of progs) s.rows.push([l, fmt(med[l]!), ratio(med[l]!, node)]);
  s.notes.push(
    `${rounds - 1} rounds after a warm-up, median. devmapper ran from ${hasDist ? 'dist/ (npm run build)' : 'src/ through tsx (dist/ missing or older than src/: the build failed, or src/ changed during the run)'}.`,
    report.figure({
      key: 'p3.cli_vs_node',
      label: 'P3 cold `devmapper dm ls` / `node -e 0`, wall time',
      target: { op: '<=', value: 1.3 },
      rounds: perRound(afterWarmup(times.get('`devmapper dm ls`')!), afterWarmup(times.get('`node -e 0`')!)),
    }),
  );
  return med;
}
