// A folder the pool manager makes is durable only once its parent's entry for it is: every folder
// made (makeDirs, the metadata folder) has its parent fsynced, so a power loss cannot lose a folder
// whose contents were fsynced. Watched through node:fs's own openSync/fsyncSync.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { makeDirs } from '../../src/thin/dirs.js';

const synced: string[] = [];
const openFds = new Map<number, string>();

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    openSync: (...args: Parameters<typeof real.openSync>) => {
      const fd = real.openSync(...args);
      openFds.set(fd, String(args[0]));
      return fd;
    },
    fsyncSync: (fd: number) => {
      real.fsyncSync(fd);
      synced.push(openFds.get(fd) ?? `fd ${fd}`);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(tmpdir(), 'thin-dir-fsync-'));
  synced.length = 0;
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('folders made are fsynced in their parent', () => {
  test('makeDirs fsyncs the parent of each folder it makes, outermost first', () => {
    const made = makeDirs(join(dir, 'a', 'b', 'c'));
    expect(made).toEqual([join(dir, 'a'), join(dir, 'a', 'b'), join(dir, 'a', 'b', 'c')]);
    expect(synced).toEqual([dir, join(dir, 'a'), join(dir, 'a', 'b')]);
    synced.length = 0;
    expect(makeDirs(join(dir, 'a', 'b'))).toEqual([]);
    expect(synced).toEqual([]);
  });

  test('MetadataStore.open fsyncs the parents of the folders it makes', () => {
    const meta = join(dir, 'devicemapper', 'metadata');
    MetadataStore.open(meta);
    expect(synced).toEqual([dir, join(dir, 'devicemapper')]);
    expect(fs.statSync(meta).mode & 0o777).toBe(0o700);
    synced.length = 0;
    MetadataStore.open(meta);
    expect(synced).toEqual([]);
  });
});
