// Child of concurrency.test.ts: a library process contending for one pool home. argv: home, the
// shared hold log, and a JSON plan { ops: [{ op: 'add' | 'delete', hash }], killAt? }. It loads
// everything, says "ready", waits for "go" on stdin, then for each op: DeviceSet.open (again after
// a short random pause while PoolLockedError says another process holds the home), the op, close.
// While it holds the lock it appends "<pid> enter|leave <CLOCK_MONOTONIC ns>" to the log and checks
// that the lock file's record names it at both ends. At `killAt` (a crash point) it SIGKILLs itself.
// Prints one JSON line: what succeeded, what was refused by whom, what failed otherwise.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceSet } from '../../src/thin/device-set.js';
import { PoolLockedError } from '../../src/thin/errors.js';

interface Plan {
  ops: { op: 'add' | 'delete'; hash: string }[];
  killAt?: string;
  /** Keep the first hold until this file exists (the test makes it once a CLI run has ended). */
  holdUntil?: string;
}
interface OpResult {
  op: 'add' | 'delete';
  hash: string;
  ok: boolean;
  error?: string;
}

const [home, log, planText] = process.argv.slice(2) as [string, string, string];
const plan = JSON.parse(planText) as Plan;
const opts = JSON.parse(readFileSync(join(home, 'storage-opts'), 'utf8')) as string[];
const lockPath = join(home, 'lock');
const GIVE_UP_MS = 240_000;

const now = (): bigint => process.hrtime.bigint();
const mark = (what: 'enter' | 'leave'): void => appendFileSync(log, `${process.pid} ${what} ${now()}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The holder's record "<pid> <start time>": ours while we hold the lock. */
const recordIsOurs = (): boolean => readFileSync(lockPath, 'utf8').split(' ')[0] === String(process.pid);

const results: OpResult[] = [];
const refusedBy: number[] = [];
const problems: string[] = [];

async function main(): Promise<void> {
  await new Promise<void>((resolveGo) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      if (d.includes('go')) resolveGo();
    });
    process.stdout.write('ready\n');
  });
  process.stdin.pause();

  const hook = (point: string): void => {
    if (point === plan.killAt) process.kill(process.pid, 'SIGKILL');
  };

  for (const { op, hash } of plan.ops) {
    const start = Date.now();
    let set: DeviceSet | undefined;
    while (set === undefined) {
      try {
        set = await DeviceSet.open(home, opts, { hook });
      } catch (e) {
        if (!(e instanceof PoolLockedError)) {
          problems.push(`open: ${(e as Error).message}`);
          break;
        }
        refusedBy.push(e.holderPid);
        if (Date.now() - start > GIVE_UP_MS) {
          problems.push(`gave up after ${GIVE_UP_MS} ms of PoolLockedError`);
          break;
        }
        await sleep(Math.floor(Math.random() * 25));
      }
    }
    if (set === undefined) break;
    mark('enter');
    if (!recordIsOurs()) problems.push('the lock record does not name us after open');
    const r: OpResult = { op, hash, ok: false };
    try {
      if (op === 'add') await set.addDevice(hash, '');
      else await set.deleteDevice(hash);
      r.ok = true;
    } catch (e) {
      r.error = `${(e as Error).name}: ${(e as Error).message}`;
    }
    results.push(r);
    for (const until = Date.now() + GIVE_UP_MS; plan.holdUntil !== undefined && !existsSync(plan.holdUntil); ) {
      if (Date.now() > until) {
        problems.push(`${plan.holdUntil} never appeared`);
        break;
      }
      await sleep(50);
    }
    plan.holdUntil = undefined;
    if (!recordIsOurs()) problems.push('the lock record does not name us before close');
    mark('leave');
    set.close();
  }

  process.stdout.write(`${JSON.stringify({ pid: process.pid, results, refusedBy, problems })}\n`);
}

// No top-level await: the test bundles this file as CommonJS (fast to start in the guest).
void main();
