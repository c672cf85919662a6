// Formatting the base device: mkfs.ext4 / mkfs.xfs run with an argument array (execFile, no
// shell), so no dm.mkfsarg can be interpreted as shell syntax. Each dm.mkfsarg occurrence is ONE
// argv element, verbatim, as in Docker: `dm.mkfsarg=-O ^has_journal` reaches mke2fs as the single
// argument "-O ^has_journal", which getopt reads as -O with the value " ^has_journal" (mke2fs skips
// the blank). Give `-L` and its value as two occurrences if the value must not start with a blank.
import { execFile } from 'node:child_process';
import { CommandError, OptionError } from './errors.js';
import { findExecutable, type FsType } from './options.js';

/** The argv for formatting `device` (exported for tests: what would run). */
export function mkfsArgv(fs: FsType, device: string, extraArgs: readonly string[], exe?: string): string[] {
  const program = exe ?? findExecutable(`mkfs.${fs}`) ?? `mkfs.${fs}`;
  if (fs === 'ext4') {
    // Initialise inode tables and journal now (not lazily by a kernel thread after mount) and do not
    // discard: the thin device is already all unmapped.
    return [program, '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', ...extraArgs, device];
  }
  return [program, '-K', ...extraArgs, device]; // -K: no discard, as above
}

export function mkfs(fs: FsType, device: string, extraArgs: readonly string[], opts: { timeoutMs?: number } = {}): Promise<void> {
  const argv = mkfsArgv(fs, device, extraArgs);
  const [program, ...args] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(program, args, { timeout: opts.timeoutMs ?? 300_000, maxBuffer: 4 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const code = (err as { code?: unknown }).code;
      reject(new CommandError(argv, typeof code === 'number' ? code : null, String(stderr || err.message)));
    });
  });
}

/**
 * mkfs.<fs> must be installed before a base device is made, checked before the pool is touched; a
 * pool whose base exists needs none (its layers are snapshots, mounted by their probed type).
 */
export function requireMkfs(fs: FsType, find: (name: string) => string | null = findExecutable): string {
  const exe = find(`mkfs.${fs}`);
  if (exe === null) throw new OptionError('dm.fs', fs, `mkfs.${fs} is not installed (not found on PATH, /sbin or /usr/sbin)`);
  return exe;
}
