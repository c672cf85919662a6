// Child process for thin-lock.test.ts: try the lock at argv[2]; print the outcome as one JSON line;
// with `hold`, keep it until stdin closes; with `die`, exit without releasing (a crashed owner).
import { HomeLock } from '../../src/thin/lock.js';

const [path, mode] = process.argv.slice(2);
try {
  const lock = HomeLock.acquire(path!);
  process.stdout.write(`${JSON.stringify({ locked: true, pid: process.pid })}\n`);
  if (mode === 'die') process.exit(0);
  if (mode === 'hold') {
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
