// The pure parts of the metadata put to use: the dm.thin_check option, the views and text of
// `pool thins` and `pool check`, and the check error's one line.
import { describe, expect, test } from 'vitest';
import { checkView, formatCheck, formatThinRows, thinRows } from '../../src/cli/pool-format.js';
import type { PoolMetadataCheck, PoolThin } from '../../src/thin/device-set.js';
import { MetadataCheckError, MetadataSnapshotBusyError, OptionError, PoolActiveError } from '../../src/thin/errors.js';
import { optionsFromStrings, parsePoolOptions } from '../../src/thin/options.js';
import { explain } from '../../src/cli/errors.js';
import { POOL_HINTS } from '../../src/cli/pool.js';

const env = { findExecutable: () => '/bin/true' };

describe('dm.thin_check', () => {
  test('on by default; false, 0 and f turn it off; the typed spelling too', () => {
    expect(parsePoolOptions([], env).thinCheck).toBe(true);
    for (const v of ['false', '0', 'f', 'FALSE']) expect(parsePoolOptions([`dm.thin_check=${v}`], env).thinCheck).toBe(false);
    expect(parsePoolOptions(['DM.THIN_CHECK=true'], env).thinCheck).toBe(true);
    expect(optionsFromStrings(['dm.thin_check=false'])).toEqual({ thinCheck: false });
    expect(parsePoolOptions({ thinCheck: false }, env).thinCheck).toBe(false);
  });
  test('a value that is not a boolean, or the key twice: OptionError naming it', () => {
    expect(() => parsePoolOptions(['dm.thin_check=maybe'], env)).toThrow(OptionError);
    expect(() => parsePoolOptions(['dm.thin_check=maybe'], env)).toThrow(/dm\.thin_check="maybe": not a boolean/);
    expect(() => parsePoolOptions(['dm.thin_check=1', 'dm.thin_check=0'], env)).toThrow(/given more than once/);
    expect(() => parsePoolOptions({ thinCheck: 'no' as unknown as boolean }, env)).toThrow(/dm\.thin_check="no": must be a boolean/);
  });
  test('the unknown-option error lists it', () => {
    expect(() => parsePoolOptions(['dm.thin_chek=false'], env)).toThrow(/known: .*dm\.thin_check/);
  });
});

const thin = (thinId: number, hash: string | null, mapped: number, exclusive: number): PoolThin => ({
  thinId,
  hash,
  mappedBlocks: mapped,
  exclusiveBlocks: exclusive,
  sharedBlocks: mapped - exclusive,
  transactionId: BigInt(thinId),
  creationTime: thinId,
  snapshottedTime: thinId + 1,
});

describe('pool thins', () => {
  test('bytes are blocks times the block size; JSON keeps both', () => {
    const rows = thinRows([thin(0, '', 100, 10), thin(5, 'app', 96, 0), thin(9, null, 0, 0)], 65536n);
    expect(rows[0]).toEqual({
      thinId: 0,
      hash: '',
      transactionId: 0n,
      creationTime: 0,
      snapshottedTime: 1,
      mappedBlocks: 100,
      exclusiveBlocks: 10,
      sharedBlocks: 90,
      mappedBytes: 6553600n,
      exclusiveBytes: 655360n,
      sharedBytes: 5898240n,
    });
    expect(formatThinRows(rows)).toBe(
      'THIN ID  HASH                      MAPPED  EXCLUSIVE   SHARED  CREATED  SNAPSHOTTED\n' +
        '      0  (base)                   6.3 MiB  640.0 KiB  5.6 MiB        0            1\n' +
        '      5  app                      6.0 MiB        0 B  6.0 MiB        5            6\n' +
        '      9  - (not in our metadata)      0 B        0 B      0 B        9           10\n',
    );
  });
});

describe('pool check', () => {
  const base: PoolMetadataCheck = {
    poolName: 'p' as PoolMetadataCheck['poolName'],
    path: '/h/devicemapper/metadata',
    ok: true,
    problems: [],
    superblock: null,
  };
  test('clean: one line; problems: one line each, the block first when there is one', () => {
    expect(formatCheck(checkView(base, '/h'))).toBe('metadata of pool p (/h/devicemapper/metadata): clean, transaction id -\n');
    const bad = checkView(
      {
        ...base,
        ok: false,
        problems: [
          { block: 17, what: 'device details tree: btree_node.csum mismatch' },
          { block: null, what: 'metadata space map: metadata block 9 has count 2, but 1 references were found' },
        ],
      },
      '/h',
    );
    expect(formatCheck(bad)).toBe(
      'block 17: device details tree: btree_node.csum mismatch\n' +
        'metadata space map: metadata block 9 has count 2, but 1 references were found\n',
    );
    expect(bad).toMatchObject({ poolName: 'p', home: '/h', ok: false, transactionId: null });
  });

  test('the errors: one line with errno first and what to do', () => {
    const problems = [1, 2, 3, 4].map((b) => ({ block: b, what: `bad ${b}` }));
    const e = new MetadataCheckError('p', '/m', problems);
    expect(e.code).toBe('EUCLEAN');
    expect(explain(e, POOL_HINTS).message).toBe(
      'EUCLEAN: pool p: its metadata /m fails the check (4 problems: block 1: bad 1; block 2: bad 2; block 3: bad 3; and 1 more); ' +
        'not activated (repair it with thin_repair, or open with dm.thin_check=false at your own risk) ' +
        "('devmapper pool check' lists every problem)",
    );
    expect(explain(new PoolActiveError('p', 'checking its metadata'), POOL_HINTS).message).toBe(
      'EBUSY: pool p is active: checking its metadata needs it shut down (the kernel writes its metadata while it runs) ' +
        "(shut the pool down first ('devmapper pool shutdown'); 'devmapper pool init' activates it again)",
    );
    const busy = new MetadataSnapshotBusyError('p', 42n);
    expect(busy.code).toBe('EBUSY');
    expect(busy.message).toMatch(
      /^pool p already holds a metadata snapshot \(held root 42\) .*'dmsetup message p 0 release_metadata_snap'/,
    );
    const line = explain(busy, POOL_HINTS).message;
    expect(line).toMatch(/^EBUSY: pool p already holds .*\(retry once that program is done with it\)$/);
    expect(line).not.toMatch(/layer umount/);
  });
});
