// removeByPrefix in a real kernel: a thin device on its pool, a linear on a linear and a suspended
// device all go, holders first, and dmsetup (an independent oracle) sees nothing left.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { removeByPrefix } from '../../src/dm/teardown.js';
import { createThin } from '../../src/dm/thin-messages.js';
import { activateThin, dmName, kernelHooks, linearOver, LoopScratch, makePool, openDm, oracleInfo, oracleLs } from './support/env.js';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { sectors } from '../../src/structs/units.js';
import { thinId } from '../../src/dm/names.js';

kernelHooks();

let dm: DeviceMapper;
let scratch: LoopScratch;
beforeAll(() => {
  dm = openDm();
  scratch = new LoopScratch('teardown');
});
afterAll(async () => {
  dm.close();
  await scratch.cleanup();
});

test('holders first, suspended ones resumed first, nothing left', async () => {
  const family = dmName('td-');
  const pool = await makePool(dm, scratch, 'td-p');
  createThin(dm, { name: pool.name }, thinId(0));
  const thin = await activateThin(dm, pool, 'td-thin', 0, 2048n);
  const loop = await scratch.loop('td-lin.img', 4 << 20);
  const low = await dm.create(dmName('td-low'), { table: linearOver(loop, 4096n) });
  await dm.create(dmName('td-top'), { table: linearOver(low.dev, 2048n) });
  // The pool suspended under its thin device, and the lower linear under the upper one.
  await dm.suspend({ name: pool.name });
  await dm.suspend({ name: low.name });
  expect(oracleInfo(pool.name)?.attr).toMatch(/^[L-][I-]s/); // dmsetup attr: live, inactive, suspended
  const stranger = await dm.create(dmName('other-keep'), {
    table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) }],
  });

  const result = await removeByPrefix(dm, family);
  expect(result.failed).toEqual([]);
  const at = (n: string) => (result.removed as string[]).indexOf(n);
  expect(new Set(result.removed)).toEqual(new Set([thin.name, pool.name, low.name, dmName('td-top')]));
  expect(at(thin.name)).toBeLessThan(at(pool.name));
  expect(at(dmName('td-top'))).toBeLessThan(at(low.name));
  expect([...oracleLs().keys()].filter((n) => n.startsWith(family))).toEqual([]);
  expect(oracleInfo(stranger.name)).not.toBeNull(); // another prefix: left alone
  await dm.remove({ name: stranger.name });
});
