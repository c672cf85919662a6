// Child process for thin-lock.test.ts: try the lock at argv[2]; print the outcome as one JSON line;
// with `hold`, keep it until stdin closes; with `die`, exit without releasing (a crashed owner);
// with `hold-spawn`, also start a long-lived grandchild (it must not inherit the lock) and print its pid.
import { spawn } from 'node:child_process';
import { HomeLock } from '../../src/thin/lock.js';

const [path, mode] = process.argv.slice(2);
try {
  const lock = HomeLock.acquire(path!);
  let grandchild: number | undefined;
  if (mode === 'hold-spawn') {
    const g = spawn('sleep', ['60'], { stdio: 'ignore', detached: true });
    g.unref();
    grandchild = g.pid;
  }
  process.stdout.write(`${JSON.stringify({ locked: true, pid: process.pid, grandchild })}\n`);
  if (mode === 'die') process.exit(0);
  if (mode === 'hold' || mode === 'hold-spawn') {
    process.stdin.resume();
    process.stdin.on('end', () => {
      lock.release();
      process.exit(0);
    });
  } else lock.release();
} catch (e) {
  const err = e as { name: string; holderPid?: number; message: string };
  process.stdout.write(`${JSON.stringify({ locked: false, error: err.name, holderPid: err.holderPid, message: err.message })}\n`);
}
