// The pool/layer/demo CLI's pure parts: option merging and checking, error lines, number and table
// formats, the demo's file diff, and progress output that appears only when asked for.
import { describe, expect, test } from 'vitest';
import { diffListing } from '../../src/cli/demo.js';
import { formatLayerRows, formatLayerStatus, type LayerRow } from '../../src/cli/layer.js';
import {
  checkStorageOpts,
  explain,
  formatBytes,
  formatColumns,
  formatPoolStatus,
  mergeStorageOpts,
  OperationError,
  percent,
  type PoolStatusView,
} from '../../src/cli/pool.js';
import { Progress } from '../../src/cli/progress.js';
import { UsageError } from '../../src/cli/usage.js';
import { DeviceBusyError, PoolLockedError, UnknownDeviceError } from '../../src/thin/errors.js';
import { DmError } from '../../src/ioctl/errors.js';
import { DmCmd } from '../../src/structs/dm-ioctl.js';
import { deviceName } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';

describe('storage options', () => {
  test('a key given again replaces every recorded entry of that key, case-insensitively', () => {
    const recorded = ['dm.basesize=1G', 'dm.mountopt=nodev', 'dm.mountopt=noatime', 'dm.prefix=a'];
    expect(mergeStorageOpts(recorded, ['DM.BASESIZE=2G', 'dm.mountopt=discard'])).toEqual([
      'dm.prefix=a',
      'DM.BASESIZE=2G',
      'dm.mountopt=discard',
    ]);
    expect(mergeStorageOpts(recorded, [])).toEqual(recorded);
  });
  test('bad options are usage errors naming the key; a missing mkfs is not checked here', () => {
    for (const bad of ['dm.basesize=huge', 'dm.nosuch=1', 'basesize', 'dm.blocksize=1000', 'dm.fs=ntfs', 'dm.prefix=a/b']) {
      expect(() => checkStorageOpts([bad]), bad).toThrow(UsageError);
    }
    expect(() => checkStorageOpts(['dm.basesize=huge'])).toThrow(/^--storage-opt dm\.basesize="huge": not a size/);
    expect(checkStorageOpts(['dm.fs=xfs', 'dm.basesize=300M']).baseSizeBytes).toBe(BigInt(300 * 2 ** 20));
    expect(() => checkStorageOpts(['dm.fs=xfs', 'dm.basesize=256M'])).toThrow(/300 MiB/);
  });
});

describe('error lines', () => {
  test('the errno name first, the message, then what to do', () => {
    const busy = explain(new DeviceBusyError('p-l1', ['open count 1', 'mounted on /m']), {
      DeviceBusyError: "unmount it first ('devmapper layer umount ID')",
    });
    expect(busy).toBeInstanceOf(OperationError);
    expect(busy.message).toBe("EBUSY: device p-l1 is busy: open count 1; mounted on /m (unmount it first ('devmapper layer umount ID'))");
    expect(explain(new UnknownDeviceError('x')).message).toBe('ENOENT: unknown device "x"');
    expect(explain(new PoolLockedError('/h/lock', 42)).message).toMatch(
      /^EWOULDBLOCK: \/h\/lock is held by process 42.* \(wait for that process to finish\)$/,
    );
  });
  test('a message that already names its errno is not prefixed again; stacks are kept for --debug', () => {
    const e = new DmError('DM_DEV_REMOVE', 6, 'lin0');
    expect(DmCmd).toBeDefined();
    const line = explain(e).message;
    expect(line).toMatch(/^ENXIO: DM_DEV_REMOVE lin0: No such device or address/);
    expect(line.match(/ENXIO/g)).toHaveLength(1);
    expect(explain(e).stack).toBe(e.stack);
  });
  test('usage and operation errors pass through; multi-line messages keep their first line', () => {
    const u = new UsageError('missing layer id');
    expect(explain(u)).toBe(u);
    expect(explain(new Error('one\ntwo')).message).toBe('one');
    expect(explain('text')).toBeInstanceOf(OperationError);
  });
});

describe('formats', () => {
  test('bytes in binary units, percentages with one decimal', () => {
    expect(formatBytes(0n)).toBe('0 B');
    expect(formatBytes(1023n)).toBe('1023 B');
    expect(formatBytes(1024n)).toBe('1.0 KiB');
    expect(formatBytes(64n * 2n ** 20n + 2n ** 19n)).toBe('64.5 MiB');
    expect(formatBytes(2n ** 30n)).toBe('1.0 GiB');
    expect(percent(1n, 3n)).toBe('33.3%');
    expect(percent(0n, 0n)).toBe('-');
    expect(percent(5n, 5n)).toBe('100.0%');
  });
  test('columns pad to the widest cell; right-aligned where asked; no trailing blanks', () => {
    expect(
      formatColumns(
        [
          ['a', 'bb', ''],
          ['ccc', 'd', ''],
        ],
        [1],
      ),
    ).toBe('a    bb\nccc   d\n');
  });
  test('pool status: facts, then used/total/percent for data and metadata', () => {
    const view: PoolStatusView = {
      poolName: deviceName('dm-8:1-2-pool'),
      dataFile: '/h/devicemapper/data',
      metadataFile: '/h/devicemapper/metadata',
      dataDevice: '4095:999999',
      metadataDevice: '4095:999998',
      data: { usedBytes: bytes(25n * 2n ** 20n), totalBytes: bytes(2n ** 30n) },
      metadata: { usedBytes: bytes(6n * 2n ** 20n), totalBytes: bytes(64n * 2n ** 20n) },
      blockSizeBytes: 65536n,
      transactionId: 5n,
      state: 'ok',
      mode: 'rw',
      needsCheck: false,
      home: '/h',
      layers: 3,
      baseSizeBytes: 256n * 2n ** 20n,
    };
    const text = formatPoolStatus(view);
    expect(text).toMatch(/^pool {12}dm-8:1-2-pool \(ok, rw\)$/m);
    expect(text).toMatch(/^block size {6}64\.0 KiB$/m);
    expect(text).toMatch(/^transaction id {2}5$/m);
    expect(text).toMatch(/^data {12}\/h\/devicemapper\/data on 4095:999999$/m); // no such device: its maj:min alone
    expect(text).toMatch(/^ +USED +TOTAL +USE%$/m);
    expect(text).toMatch(/^data {6}25\.0 MiB {3}1\.0 GiB {2}2\.4%$/m);
    expect(text).toMatch(/^metadata {3}6\.0 MiB {2}64\.0 MiB {2}9\.4%$/m);
  });
  test('layer ls and layer status', () => {
    const row: LayerRow = {
      id: 'app',
      thinId: 2,
      sizeBytes: 256n * 2n ** 20n,
      mappedBytes: 2n ** 20n,
      exclusiveBytes: 2n ** 19n,
      mappedSectors: 2048n,
      highestMappedSector: 4095n,
      transactionId: 3n,
      dmName: 'p-app',
      device: '/dev/mapper/p-app',
      active: true,
      mounted: ['/h/mnt/app'],
    };
    expect(formatLayerRows([row, { ...row, id: 'b', thinId: 10, active: false, mounted: [], device: null }])).toBe(
      'ID   THIN ID       SIZE   MAPPED  EXCLUSIVE  ACTIVE  MOUNTED\n' +
        'app        2  256.0 MiB  1.0 MiB  512.0 KiB  yes     /h/mnt/app\n' +
        'b         10  256.0 MiB  1.0 MiB  512.0 KiB  no      -\n',
    );
    const st = formatLayerStatus(row);
    expect(st).toMatch(/^mapped +1\.0 MiB \(2048 sectors, 0\.4%\)$/m);
    expect(st).toMatch(/^exclusive +512\.0 KiB \(mapped by this layer alone\)$/m);
    expect(st).toMatch(/^size +256\.0 MiB \(524288 sectors\)$/m);
    expect(st).toMatch(/^mounted on +\/h\/mnt\/app$/m);
  });
  test("the demo's changes column: added, changed, deleted", () => {
    const f = (sum: string) => ({ size: 1, sum });
    const parent = new Map([
      ['a', f('1')],
      ['b', f('2')],
      ['c', f('3')],
    ]);
    const child = new Map([
      ['a', f('1')],
      ['b', f('9')],
      ['d', f('4')],
    ]);
    expect(diffListing(parent, child)).toBe('~b +d -c');
    expect(diffListing(new Map(), new Map())).toBe('');
  });
});

describe('progress', () => {
  test('writes steps with their time when enabled, nothing when not', async () => {
    const seen: string[] = [];
    const on = new Progress(true, (t) => seen.push(t));
    expect(await on.step('work', () => 7)).toBe(7);
    on.note('done');
    await expect(on.step('bad', () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(seen.join('')).toMatch(/^work \.\.\. \d+\.\d s\ndone\nbad \.\.\. failed\n$/);
    const quiet: string[] = [];
    const off = new Progress(false, (t) => quiet.push(t));
    await off.step('work', () => undefined);
    off.note('x');
    off.begin('y')();
    expect(quiet).toEqual([]);
  });
});
