// Child of thin-crash.test.ts: open the pool in argv[2], run operation argv[3], and SIGKILL itself
// at step argv[4] (a real crash: no finally blocks, no exit handlers). Prints "completed" if the
// step was never reached, so the parent knows the point is not real.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceSet } from '../../src/thin/device-set.js';
import { SMALL } from './thin-support.js';

const [home, op, point] = process.argv.slice(2) as [string, string, string];
const hook = (p: string) => {
  if (p === point) process.kill(process.pid, 'SIGKILL');
};
const set = await DeviceSet.open(home, SMALL, { hook });
switch (op) {
  case 'init':
    break;
  case 'create':
    await set.addDevice('b', '');
    break;
  case 'snapshot-active': {
    const mp = join(home, 'm', 'a');
    mkdirSync(mp, { recursive: true });
    await set.mountDevice('a', mp);
    await set.addDevice('b', 'a');
    break;
  }
  case 'delete':
    await set.deleteDevice('a');
    break;
  default:
    throw new Error(`unknown op ${op}`);
}
process.stdout.write('completed\n');
await set.close();
