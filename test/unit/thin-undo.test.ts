// The all-or-nothing helpers: mkdir -p that says what it made and fails with the errno, and an
// undo list that runs newest first and reports what it could not take back.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { makeDirs } from '../../src/thin/dirs.js';
import { Undo } from '../../src/thin/undo.js';

const scratch: string[] = [];
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'thin-undo-'));
  scratch.push(d);
  return d;
};
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('makeDirs', () => {
  test('returns the folders it made, outermost first; none when all exist', () => {
    const d = dir();
    expect(makeDirs(join(d, 'a', 'b', 'c'))).toEqual([join(d, 'a'), join(d, 'a', 'b'), join(d, 'a', 'b', 'c')]);
    expect(makeDirs(join(d, 'a', 'b'))).toEqual([]);
  });

  test('a parent that refuses children (procfs) is ENOENT at once, not a spin', () => {
    expect(() => makeDirs('/proc/devicemapper-test/x')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  test('a file in the way is ENOTDIR', () => {
    const d = dir();
    writeFileSync(join(d, 'f'), '');
    expect(() => makeDirs(join(d, 'f', 'x'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  });
});

describe('Undo', () => {
  test('newest first; a failing step is reported and the rest still run', async () => {
    const order: string[] = [];
    const u = new Undo();
    u.push('one', () => order.push('one'));
    u.push('two', () => {
      throw new Error('EBUSY: held');
    });
    u.push('three', async () => void order.push('three'));
    const err = await u.unwind(new Error('the cause'));
    expect(order).toEqual(['three', 'one']);
    expect((err as Error).message).toBe('the cause (and could not remove: two: EBUSY: held)');
    expect(err).toMatchObject({ leftBehind: ['two: EBUSY: held'] });
    expect(await u.run()).toEqual([]); // ran once
  });

  test('folders and files it made go; commit keeps everything', async () => {
    const d = dir();
    const u = new Undo();
    for (const m of makeDirs(join(d, 'x', 'y'))) u.dir(m);
    writeFileSync(join(d, 'x', 'y', 'f'), '');
    u.file(join(d, 'x', 'y', 'f'));
    expect(await u.run()).toEqual([]);
    expect(existsSync(join(d, 'x'))).toBe(false);
    const kept = new Undo();
    for (const m of makeDirs(join(d, 'k'))) kept.dir(m);
    kept.commit();
    expect(await kept.run()).toEqual([]);
    expect(existsSync(join(d, 'k'))).toBe(true);
  });
});
