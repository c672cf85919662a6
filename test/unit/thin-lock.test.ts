import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { PoolLockedError } from '../../src/thin/errors.js';
import { HomeLock } from '../../src/thin/lock.js';

const child = resolve(import.meta.dirname, 'thin-lock-child.ts');
let dir: string;
let lockPath: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-lock-'));
  lockPath = join(dir, 'lock');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function tryInChild(mode = ''): { locked: boolean; error?: string; holderPid?: number; pid?: number } {
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', child, lockPath, mode], { encoding: 'utf8' }));
}

describe('HomeLock', () => {
  test('a second process gets PoolLockedError naming the holder', () => {
    const lock = HomeLock.acquire(lockPath);
    const r = tryInChild();
    expect(r).toMatchObject({ locked: false, error: 'PoolLockedError', holderPid: process.pid });
    lock.release();
    expect(existsSync(lockPath)).toBe(false);
    expect(tryInChild()).toMatchObject({ locked: true });
  });

  test('a second open in the same process is refused too', () => {
    const lock = HomeLock.acquire(lockPath);
    expect(() => HomeLock.acquire(lockPath)).toThrow(PoolLockedError);
    lock.release();
    expect(readdirNames()).toEqual([]);
  });

  test('while a child holds it, this process is refused', async () => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, lockPath, 'hold'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const line = await new Promise<string>((res) => createInterface({ input: p.stdout! }).once('line', res));
    expect(JSON.parse(line)).toMatchObject({ locked: true, pid: p.pid });
    let err: unknown;
    try {
      HomeLock.acquire(lockPath);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PoolLockedError);
    expect((err as PoolLockedError).holderPid).toBe(p.pid);
    expect((err as Error).message).toContain(String(p.pid));
    p.stdin!.end();
    await new Promise((res) => p.once('exit', res));
    HomeLock.acquire(lockPath).release();
  });

  test('the lock of a dead process is stale and taken over', () => {
    expect(tryInChild('die')).toMatchObject({ locked: true });
    expect(existsSync(lockPath)).toBe(true);
    const lock = HomeLock.acquire(lockPath);
    expect(HomeLock.holder(lockPath)).toBe(process.pid);
    lock.release();
  });

  test('a live pid with another start time (pid reused) is stale', () => {
    writeFileSync(lockPath, `${process.pid} 1\n`);
    HomeLock.acquire(lockPath).release();
  });

  test('garbage in the lock file counts as stale', () => {
    writeFileSync(lockPath, 'not a pid');
    HomeLock.acquire(lockPath).release();
  });
});

function readdirNames(): string[] {
  return readdirSync(dir);
}
