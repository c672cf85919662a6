// Every Driver entry point checks its id before anything else: the DeviceSet under it is never
// reached with '' (the base, which get would mount over <home>/mnt) or an id that is a path.
// The real pool is the kernel tier's (test/kernel/inputs.test.ts); here the DeviceSet is a
// recorder that fails the test if it is touched at all.
import { describe, expect, test } from 'vitest';
import { Driver } from '../../src/driver/driver.js';
import type { DeviceSet } from '../../src/thin/device-set.js';
import { InvalidHashError, MountOptionError } from '../../src/thin/errors.js';

function untouchedDriver(): { driver: Driver; touched: string[] } {
  const touched: string[] = [];
  const set = new Proxy(
    {},
    {
      get(_t, key) {
        touched.push(String(key));
        throw new Error(`DeviceSet.${String(key)} reached`);
      },
    },
  ) as DeviceSet;
  // The constructor is private: Driver.init opens a real pool.
  const driver = Reflect.construct(Driver, ['/nonexistent/home', set]) as Driver;
  return { driver, touched };
}

const BAD = ['', '.', '..', '../../x', 'a/b', 'a\nb', 'a b', 'a\uD800', 'pool'];

describe('Driver ids', () => {
  test.each(BAD)('get/put/remove/create(%j) are refused before the pool is touched', async (id) => {
    const { driver, touched } = untouchedDriver();
    await expect(driver.get(id)).rejects.toThrow(InvalidHashError);
    await expect(driver.put(id)).rejects.toThrow(InvalidHashError);
    await expect(driver.remove(id)).rejects.toThrow(InvalidHashError);
    await expect(driver.create(id)).rejects.toThrow(InvalidHashError);
    expect(() => driver.exists(id)).toThrow(InvalidHashError);
    expect(touched).toEqual([]);
  });

  test.each(BAD.filter((p) => p !== ''))('create(ok, %j): a parent that is no layer id is refused', async (parent) => {
    const { driver, touched } = untouchedDriver();
    await expect(driver.create('ok', parent)).rejects.toThrow(InvalidHashError);
    expect(touched).toEqual([]);
  });

  test('a mount label that would split into options is refused before the pool is touched', async () => {
    const { driver, touched } = untouchedDriver();
    await expect(driver.get('ok', 's0"c1')).rejects.toThrow(MountOptionError);
    expect(touched).toEqual([]);
  });

  test("parent '' is the base: create goes on to the pool", async () => {
    const { driver, touched } = untouchedDriver();
    await expect(driver.create('ok', '')).rejects.toThrow(/DeviceSet.addDevice reached/);
    expect(touched).toEqual(['addDevice']);
  });
});
