// Child processes of the bench: C programs that time themselves, and whole-process wall times.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { nowNs, msSince } from './stats.js';

export const PROJECT = join(import.meta.dirname, '..');
export const BUILD_DIR = join(PROJECT, '.vm', 'bench-build');

/** Runs a bench C program; returns its "key value" output as numbers. */
export function runC(program: 'dmraw' | 'dmlib', args: readonly string[]): Record<string, number> {
  const out = execFileSync(join(BUILD_DIR, program), args, { encoding: 'utf8', env: { ...process.env, DM_DISABLE_UDEV: '1' } });
  const words = out.trim().split(/\s+/);
  const r: Record<string, number> = {};
  for (let i = 0; i + 1 < words.length; i += 2) r[words[i] as string] = Number(words[i + 1]);
  return r;
}

/** Wall time of a whole process, output discarded (ms). Throws on a non-zero exit. */
export function wallMs(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): number {
  const t0 = nowNs();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env, cwd: PROJECT });
  const ms = msSince(t0);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${String(r.stderr).trim()}`);
  return ms;
}

/** A bash script that prints its own timing ("ns N" or "ms ..." lines); returns its stdout. */
export function bash(script: string, args: readonly string[]): string {
  return execFileSync('bash', ['-c', script, 'bench', ...args], {
    encoding: 'utf8',
    env: { ...process.env, DM_DISABLE_UDEV: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}
