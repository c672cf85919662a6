import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { formatTableLine } from '../../src/dm/targets.js';
import { checkLoopFiles, hasThinSuperblock, loopFiles, poolTable } from '../../src/thin/pool-setup.js';
import { checkNewMetadataDevice, MetadataDeviceNotZeroedError, metadataHeaderOf } from '../../src/thin/metadata-device.js';
import { bytes } from '../../src/structs/units.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-setup-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('pool table', () => {
  test('Docker-like line, low water mark capped for small pools', () => {
    expect(formatTableLine(poolTable('7:1', '7:0', bytes(256n << 20n), bytes(65536)))).toBe(
      '0 524288 thin-pool 7:1 7:0 128 409 2 skip_block_zeroing error_if_no_space',
    );
    expect(poolTable('7:1', '7:0', bytes(100n << 30n), bytes(65536)).lowWaterMarkBlocks).toBe(32768n);
    expect(poolTable('7:1', '7:0', bytes(1n << 30n), bytes(512 * 1024)).dataBlockSizeSectors).toBe(1024);
  });
});

describe('metadata superblock', () => {
  test('a dm-thin superblock is recognised by its magic at byte 32', () => {
    const p = join(dir, 'meta');
    const buf = Buffer.alloc(8192, 0xaa);
    buf.writeBigUInt64LE(27022010n, 32);
    writeFileSync(p, buf);
    expect(hasThinSuperblock(p)).toBe(true);
    expect(metadataHeaderOf(p)).toBe('superblock');
    expect(checkNewMetadataDevice(p)).toBe('adopt');
  });
  test('a new metadata device: zeroed first 4 KiB is fresh; one other byte, or fewer bytes, is refused with the dd command', () => {
    const p = join(dir, 'zeroed');
    const buf = Buffer.alloc(8192, 0);
    buf[4096] = 0xff; // past the first block: not looked at
    writeFileSync(p, buf);
    expect(metadataHeaderOf(p)).toBe('zeroed');
    expect(checkNewMetadataDevice(p)).toBe('fresh');
    buf[4095] = 1;
    writeFileSync(p, buf);
    expect(metadataHeaderOf(p)).toBe('other');
    const err = (() => {
      try {
        checkNewMetadataDevice(p);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MetadataDeviceNotZeroedError);
    expect(err).toMatchObject({ code: 'EINVAL', path: p, command: `dd if=/dev/zero of=${p} bs=4096 count=1` });
    expect((err as Error).message).toContain(`dd if=/dev/zero of=${p} bs=4096 count=1`);
    writeFileSync(p, Buffer.alloc(4095));
    expect(metadataHeaderOf(p)).toBe('other');
  });
  test('short or other content is not a superblock', () => {
    const p = join(dir, 'short');
    writeFileSync(p, Buffer.alloc(16));
    expect(hasThinSuperblock(p)).toBe(false);
  });
});

describe('loop files: made only for a new pool', () => {
  const files = () => loopFiles(dir);
  const refusal = (newPool: boolean): unknown => {
    try {
      checkLoopFiles(files(), newPool);
    } catch (e) {
      return e;
    }
    return undefined;
  };

  test('no pool state and neither file: a new pool, both are to be made', () => {
    expect(checkLoopFiles(files(), true)).toBe('create');
    expect(readdirSync(dir)).toEqual([]);
  });

  test('both files there: adopted, with or without pool state', () => {
    writeFileSync(files().data, '');
    writeFileSync(files().metadata, '');
    expect(checkLoopFiles(files(), true)).toBe('adopt');
    expect(checkLoopFiles(files(), false)).toBe('adopt');
  });

  test('a new pool cut off after its data file (made first) makes the metadata file only', () => {
    writeFileSync(files().data, 'x');
    expect(checkLoopFiles(files(), true)).toBe('create-metadata');
    expect(readdirSync(dir)).toEqual(['data']);
  });

  test.each([
    ['data', false, 'metadata'],
    ['data', true, 'metadata'],
    ['metadata', true, 'data'],
    ['data', true, ''],
  ] as const)('%s missing (pool state %s, %j there): ENOENT naming it, nothing made', (missing, state, present) => {
    if (present !== '') writeFileSync(files()[present], 'x');
    const before = readdirSync(dir).sort();
    const err = refusal(!state);
    expect(err).toMatchObject({ name: 'PoolFileMissingError', code: 'ENOENT', path: files()[missing] });
    expect((err as Error).message).toContain(files()[missing]);
    expect(readdirSync(dir).sort()).toEqual(before);
  });
});
