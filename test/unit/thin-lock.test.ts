import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { LOCK_EX, sysFlock } from '../../src/ioctl/libc.js';
import { PoolLockedError } from '../../src/thin/errors.js';
import { checkHomeFolders, HomeLock } from '../../src/thin/lock.js';

const child = resolve(import.meta.dirname, 'thin-lock-child.ts');
let dir: string;
let lockPath: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-lock-'));
  lockPath = join(dir, 'lock');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface ChildResult {
  locked: boolean;
  error?: string;
  holderPid?: number;
  pid?: number;
  grandchild?: number;
  message?: string;
}

function tryInChild(mode = ''): ChildResult {
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', child, lockPath, mode], { encoding: 'utf8' }));
}

/** A child that holds the lock until its stdin closes; resolves once it has it. */
async function holdInChild(mode: 'hold' | 'hold-spawn'): Promise<{ p: ChildProcess; r: ChildResult }> {
  const p = spawn(process.execPath, ['--import', 'tsx', child, lockPath, mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((res) => createInterface({ input: p.stdout! }).once('line', res));
  return { p, r: JSON.parse(line) };
}

function acquireError(): unknown {
  try {
    HomeLock.acquire(lockPath).release();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('HomeLock (flock)', () => {
  test('a second process gets PoolLockedError naming the holder; after release it gets the lock', () => {
    const lock = HomeLock.acquire(lockPath);
    expect(readFileSync(lockPath, 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
    const r = tryInChild();
    expect(r).toMatchObject({ locked: false, error: 'PoolLockedError', holderPid: process.pid });
    expect(r.message).toContain(String(process.pid));
    lock.release();
    // The file stays (unlinking a flock file races), emptied so no stale pid is ever reported.
    expect(readFileSync(lockPath, 'utf8')).toBe('');
    expect(tryInChild()).toMatchObject({ locked: true });
  });

  test('a second open in the same process is refused too', () => {
    const lock = HomeLock.acquire(lockPath);
    expect(() => HomeLock.acquire(lockPath)).toThrow(PoolLockedError);
    lock.release();
    lock.release(); // idempotent
    HomeLock.acquire(lockPath).release();
    expect(readdirSync(dir)).toEqual(['lock']);
  });

  test('while a child holds it, this process is refused and holder() names the child', async () => {
    const { p, r } = await holdInChild('hold');
    expect(r).toMatchObject({ locked: true, pid: p.pid });
    const err = acquireError();
    expect(err).toBeInstanceOf(PoolLockedError);
    expect((err as PoolLockedError).holderPid).toBe(p.pid);
    expect((err as Error).message).toContain(String(p.pid));
    expect(HomeLock.holder(lockPath)).toBe(p.pid);
    p.stdin!.end();
    await new Promise((res) => p.once('exit', res));
    expect(HomeLock.holder(lockPath)).toBeNull();
    HomeLock.acquire(lockPath).release();
  });

  test('a SIGKILLed holder: its lock is free at once, even while its own child lives on', async () => {
    const { p, r } = await holdInChild('hold-spawn');
    expect(r.grandchild).toBeGreaterThan(0);
    try {
      expect(acquireError()).toBeInstanceOf(PoolLockedError);
      const exited = new Promise((res) => p.once('exit', res));
      p.kill('SIGKILL');
      await exited;
      // The record still names the dead holder; only the flock counts, and the kernel dropped it.
      expect(readFileSync(lockPath, 'utf8')).toMatch(new RegExp(`^${p.pid} `));
      // No stale-lock heuristics: the flock alone decides, and the kernel dropped it.
      const lock = HomeLock.acquire(lockPath);
      expect(HomeLock.holder(lockPath)).toBe(process.pid);
      lock.release();
    } finally {
      process.kill(r.grandchild!, 'SIGKILL');
    }
  });

  test('a holder that exits without releasing leaves no lock', () => {
    expect(tryInChild('die')).toMatchObject({ locked: true });
    const lock = HomeLock.acquire(lockPath);
    expect(HomeLock.holder(lockPath)).toBe(process.pid);
    lock.release();
  });

  test('the file content is only a record: a live pid in an unlocked file does not block', () => {
    writeFileSync(lockPath, `${process.pid} 1\n`);
    HomeLock.acquire(lockPath).release();
    writeFileSync(lockPath, 'not a pid');
    expect(HomeLock.holder(lockPath)).toBeNull();
    HomeLock.acquire(lockPath).release();
  });

  test('held by someone whose record is missing: refused after a short wait, holder pid 0', () => {
    const fd = openSync(lockPath, 'w');
    try {
      sysFlock(fd, LOCK_EX);
      const err = acquireError();
      expect(err).toBeInstanceOf(PoolLockedError);
      expect((err as PoolLockedError).holderPid).toBe(0);
      expect(HomeLock.holder(lockPath)).toBe(0);
    } finally {
      closeSync(fd);
    }
    HomeLock.acquire(lockPath).release();
  });
});

describe('the lock file is never followed or truncated unless it is our own plain file', () => {
  test('a symlink to another file: refused with ELOOP naming the path, the target untouched', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'root:x:0:0\n');
    symlinkSync(victim, lockPath);
    expect(acquireError()).toMatchObject({ name: 'UnsafeHomeError', code: 'ELOOP', path: lockPath });
    expect((acquireError() as Error).message).toContain(lockPath);
    expect(readFileSync(victim, 'utf8')).toBe('root:x:0:0\n');
  });

  test('a hard link to another file: refused (EINVAL), its content untouched', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep me\n');
    linkSync(victim, lockPath);
    expect(acquireError()).toMatchObject({ name: 'UnsafeHomeError', code: 'EINVAL', path: lockPath });
    expect(readFileSync(victim, 'utf8')).toBe('keep me\n');
  });

  test('a fifo or a folder in its place: refused as not a regular file', () => {
    mkdirSync(lockPath);
    expect(acquireError()).toMatchObject({ code: expect.stringMatching(/^(EINVAL|EISDIR)$/) });
    rmSync(lockPath, { recursive: true });
    execFileSync('mkfifo', [lockPath]);
    expect(acquireError()).toMatchObject({ name: 'UnsafeHomeError', code: 'EINVAL', path: lockPath });
  });
});

describe('checkHomeFolders: the home and its folders are ours and not writable by group or others', () => {
  const uid = process.getuid!();
  test('a private home passes; so do its folders', () => {
    mkdirSync(join(dir, 'devicemapper'), { mode: 0o700 });
    mkdirSync(join(dir, 'metadata'), { mode: 0o755 });
    expect(() => checkHomeFolders(dir)).not.toThrow();
  });

  test.each([
    ['', '777'],
    ['', '770'],
    ['devicemapper', '757'],
    ['metadata', '720'],
  ])('%j with mode %s: UnsafeHomeError EPERM naming the path and its mode', (sub, octal) => {
    const mode = Number.parseInt(octal, 8);
    for (const d of ['devicemapper', 'metadata']) mkdirSync(join(dir, d), { mode: 0o700 });
    const path = sub === '' ? dir : join(dir, sub);
    chmodSync(path, mode);
    let err: unknown;
    try {
      checkHomeFolders(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ name: 'UnsafeHomeError', code: 'EPERM', path });
    expect((err as Error).message).toContain(`mode 0${mode.toString(8)}`);
  });

  test('a folder owned by another user is refused, naming its owner', () => {
    // As root, make one that is not ours; otherwise / is (root's).
    let home = dir;
    if (uid === 0) chownSync(dir, 65534, 65534);
    else home = '/';
    let err: unknown;
    try {
      checkHomeFolders(home);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ name: 'UnsafeHomeError', code: 'EPERM', path: home });
    expect((err as Error).message).toMatch(/owned by uid \d+/);
  });
});
