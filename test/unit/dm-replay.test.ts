// Every DeviceMapper function against the replay of the golden command(s) it corresponds to: the
// requests must match libdevmapper's bytes (less REPLAY_ALLOWED_DIFFERENCES), the replies must be
// read as dmsetup read them. Records marked "synthetic" are derived from golden ones for what the
// captures lack (deferred remove, ARM_POLL, uuids in the list).
import { describe, expect, it } from 'vitest';
import { DM_COMMAND_MIN_VERSION, DmFlag, encodeDmIoctl, type DmCommandName, dmRequest, DmCmd } from '../../src/structs/dm-ioctl.js';
import { encodeNameList } from '../../src/structs/name-list.js';
import { encodeTargetMsg } from '../../src/structs/target-msg.js';
import { encodeDev } from '../../src/structs/dev.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { parseThinStatus } from '../../src/dm/status/thin.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import type { Target } from '../../src/dm/targets.js';
import {
  createSnap,
  createThin,
  deleteThin,
  releaseMetadataSnap,
  reserveMetadataSnap,
  setTransactionId,
} from '../../src/dm/thin-messages.js';
import { command, dmRecord, type GoldenBufRecord, type GoldenName } from '../support/golden.js';
import { MemoryNodes, ReplayMismatch, ReplayTransport, dmErrorOf, replayDeviceMapper, type ReplaySession } from '../support/replay.js';
import { sectors } from '../../src/structs/units.js';
import { thinId, type ThinId, type DeviceName, deviceName, deviceUuid } from '../../src/dm/names.js';

const lin0Dev = { major: 254, minor: 0 };
const linear = (lengthSectors: bigint, device: string, offsetSectors: bigint, startSector = 0n): Target => ({
  type: 'linear',
  startSector: sectors(startSector),
  lengthSectors: sectors(lengthSectors),
  device,
  offsetSectors: sectors(offsetSectors),
});

/** A session replaying golden commands; `run` gets it and the test ends with every record used. */
async function replay(
  ns: GoldenName | GoldenName[],
  run: (s: ReplaySession) => unknown,
  opts: Parameters<typeof replayDeviceMapper>[1] = {},
): Promise<ReplaySession> {
  const s = replayDeviceMapper(ReplayTransport.of(...[ns].flat()), opts);
  await run(s);
  s.finish();
  return s;
}

/** A record built from our own encoder, answered with `after` (synthetic: no capture has it). */
function synthetic(
  name: DmCommandName,
  req: Parameters<typeof encodeDmIoctl>[0],
  payload: Uint8Array | undefined,
  after: Uint8Array,
  errno = 0,
): GoldenBufRecord {
  const before = encodeDmIoctl(req, payload, 0);
  const base = dmRecord('infoLin0', 'DM_DEV_STATUS');
  return {
    ...base,
    label: `synthetic:${name}`,
    req_name: name,
    req: dmRequest(DmCmd[name]),
    size: before.length,
    before,
    after,
    ret: errno ? -1 : 0,
    errno,
    errno_name: '',
  };
}

describe('replay: version, versions, list', () => {
  it('version', () => replay('version', ({ dm }) => expect(dm.version()).toEqual([4, 47, 0])));
  it('listVersions (dmsetup targets)', () =>
    replay('targets', ({ dm }) => {
      const lines = command('targets')
        .stdout.trim()
        .split('\n')
        .map((l) => l.split(/\s+/));
      expect(dm.listVersions().map((t) => [t.name, `v${t.version.join('.')}`])).toEqual(lines);
    }));
  it('targetVersion', () =>
    replay('targetVersion', ({ dm }) => {
      expect(dm.targetVersion('thin-pool')).toEqual([1, 22, 0]);
      expect(dm.targetVersion('linear')).toEqual([1, 4, 0]);
    }));
  it('lsEmpty list (empty)', () => replay('lsEmpty', ({ dm }) => expect(dm.list()).toEqual([])));
  it('ls list', () =>
    replay('ls', ({ dm }) =>
      expect(dm.list()).toEqual([
        { name: 'empty0', dev: { major: 254, minor: 2 }, eventNr: 0 },
        { name: 'lin0', dev: lin0Dev, eventNr: 0 },
        { name: 'lin2', dev: { major: 254, minor: 1 }, eventNr: 0 },
      ]),
    ));
  it('lsAfterRemoveAll list after remove_all', () => replay('lsAfterRemoveAll', ({ dm }) => expect(dm.list()).toEqual([])));
  it('list with uuids sends DM_UUID_FLAG and reads them (synthetic reply)', async () => {
    const version = dmRecord('ls', 'DM_VERSION');
    const payload = encodeNameList([{ dev: encodeDev({ major: 254, minor: 1 }), name: 'lin2', event_nr: 3, uuid: 'DMGOLD-lin2-uuid' }], {
      withTail: true,
    });
    const after = encodeDmIoctl({ version: [4, 47, 0], flags: DmFlag.DM_UUID_FLAG }, payload, 16384);
    const list = synthetic('DM_LIST_DEVICES', { version: [4, 0, 0], flags: DmFlag.DM_UUID_FLAG }, undefined, after);
    const list2 = { ...list, before: encodeDmIoctl({ version: [4, 0, 0], flags: DmFlag.DM_UUID_FLAG }, undefined, 16384) };
    const s = replayDeviceMapper(new ReplayTransport([version, list2]));
    expect(s.dm.list({ uuids: true })).toEqual([{ name: 'lin2', dev: { major: 254, minor: 1 }, eventNr: 3, uuid: 'DMGOLD-lin2-uuid' }]);
    s.finish();
  });
});

describe('replay: create, load, resume and their errors', () => {
  it('createLin0 create with a table: DEV_CREATE, TABLE_LOAD by dev, resume, node', async () => {
    const s = await replay('createLin0', async ({ dm }) => {
      const info = await dm.create(deviceName('lin0'), { table: [linear(2048n, '/dev/loop2', 0n)] });
      expect(info).toMatchObject({ name: 'lin0', dev: lin0Dev, liveTable: true, suspended: false, readOnly: false });
    });
    expect(s.nodes.ops).toEqual(['add lin0 254:0']);
  });
  it('createLin0AgainEbusy create of an existing name -> DmError EBUSY from DM_DEV_CREATE', () =>
    replay('createLin0AgainEbusy', async ({ dm }) => {
      const err = await dmErrorOf(() => dm.create(deviceName('lin0'), { table: [linear(2048n, '/dev/loop2', 0n)] }));
      expect(err).toMatchObject({ code: 'EBUSY', command: 'DM_DEV_CREATE', device: 'lin0' });
      expect(err.message).toMatch(/DM_DEV_CREATE lin0: EBUSY/);
    }));
  for (const [n, code, type, params] of [
    ['createBadTargetEinval', 'EINVAL', 'nosuchtarget', 'foo'],
    ['createBadLinearArgsEnodev', 'ENODEV', 'linear', '/dev/nonexistent 0'],
  ] as const) {
    it(`${n}: a refused TABLE_LOAD (${code}) removes the half-made device, as libdevmapper does`, async () => {
      const s = await replay(n, async ({ dm }) => {
        const name = deviceName(n === 'createBadTargetEinval' ? 'bad0' : 'bad1');
        const table: Target[] =
          type === 'linear'
            ? [linear(2048n, '/dev/nonexistent', 0n)]
            : [{ type, startSector: sectors(0n), lengthSectors: sectors(2048n), params }];
        const err = await dmErrorOf(() => dm.create(name, { table }));
        expect(err).toMatchObject({ code, command: 'DM_TABLE_LOAD', device: `${name} (254:1)` });
      });
      expect(s.nodes.ops).toEqual([]);
      expect(s.replay.calls.map((c) => c.command)).toEqual(['DM_VERSION', 'DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_REMOVE']);
    });
  }
  it('createLin2UuidReadonly create with uuid, read-only', () =>
    replay('createLin2UuidReadonly', async ({ dm }) => {
      const info = await dm.create(deviceName('lin2'), {
        uuid: deviceUuid('DMGOLD-lin2-uuid'),
        readOnly: true,
        table: [linear(1024n, '/dev/loop2', 2048n)],
      });
      expect(info).toMatchObject({ readOnly: true, dev: { major: 254, minor: 1 } });
    }));
  it('createEmpty0NoTable create without a table (no load, no resume, no node)', async () => {
    const s = await replay('createEmpty0NoTable', async ({ dm }) => {
      expect(await dm.create(deviceName('empty0'))).toMatchObject({ name: 'empty0', liveTable: false });
    });
    expect(s.nodes.ops).toEqual([]);
  });
  it('loadEmpty0 loadTable', () =>
    replay('loadEmpty0', ({ dm }) =>
      expect(
        dm.loadTable({ name: deviceName('empty0') }, [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(1024n) }]),
      ).toMatchObject({
        inactiveTable: true,
      }),
    ));
  it('resumeEmpty0 resume makes the node', async () => {
    const s = await replay('resumeEmpty0', ({ dm }) => dm.resume({ name: deviceName('empty0') }));
    expect(s.nodes.ops).toEqual(['add empty0 254:2']);
  });
  it('createBig0 a 2000-target table', () =>
    replay('createBig0', async ({ dm }) => {
      const table = Array.from({ length: 2000 }, (_, i) => linear(1n, '/dev/loop2', BigInt(i), BigInt(i)));
      await dm.create(deviceName('big0'), { table });
    }));
  it('createPool thin-pool, createThin0 thin, createSnap1 snapshot', () =>
    replay(['createPool', 'createThin0', 'createSnap1'], async ({ dm }) => {
      await dm.create(deviceName('pool'), {
        table: [
          {
            type: 'thin-pool',
            startSector: sectors(0n),
            lengthSectors: sectors(2097152n),
            metadataDevice: '/dev/loop0',
            dataDevice: '/dev/loop1',
            dataBlockSizeSectors: 128,
            lowWaterMarkBlocks: 32768n,
            features: [],
          },
        ],
      });
      await dm.create(deviceName('thin0'), {
        table: [
          { type: 'thin', startSector: sectors(0n), lengthSectors: sectors(2097152n), poolDevice: '/dev/mapper/pool', thinId: thinId(0) },
        ],
      });
      await dm.create(deviceName('snap1'), {
        table: [
          { type: 'thin', startSector: sectors(0n), lengthSectors: sectors(2097152n), poolDevice: '/dev/mapper/pool', thinId: thinId(1) },
        ],
      });
    }));
  it('reloadLin0/reloadLin0Again reload, clearLin0 clear, resumeLin0Reloaded resume into the new table', () =>
    replay(['reloadLin0', 'clearLin0', 'reloadLin0Again', 'resumeLin0Reloaded'], async ({ dm }) => {
      expect(dm.loadTable({ name: deviceName('lin0') }, [linear(4096n, '/dev/loop2', 0n)])).toMatchObject({
        inactiveTable: true,
        liveTable: true,
      });
      expect(dm.clearTable({ name: deviceName('lin0') })).toMatchObject({ inactiveTable: false });
      dm.loadTable({ name: deviceName('lin0') }, [linear(4096n, '/dev/loop2', 0n)]);
      expect(await dm.resume({ name: deviceName('lin0') })).toMatchObject({ inactiveTable: false, liveTable: true });
    }));
});

describe('replay: info, table, status, deps', () => {
  it('infoEmpty0Inactive info with only an inactive table', () =>
    replay('infoEmpty0Inactive', ({ dm }) =>
      expect(dm.info({ name: deviceName('empty0') })).toMatchObject({
        liveTable: false,
        inactiveTable: true,
        targetCount: 0,
        dev: { major: 254, minor: 2 },
      }),
    ));
  it('infoLin0 info (active), infoLin0Suspended (suspended), infoByUuid by uuid, infoByMajorMinor by dev', () =>
    replay(['infoLin0', 'infoLin0Suspended', 'infoByUuid', 'infoByMajorMinor'], ({ dm }) => {
      expect(dm.info({ name: deviceName('lin0') })).toEqual({
        name: 'lin0',
        uuid: '',
        dev: lin0Dev,
        openCount: 0,
        eventNr: 0,
        targetCount: 1,
        readOnly: false,
        suspended: false,
        liveTable: true,
        inactiveTable: false,
        deferredRemove: false,
      });
      expect(dm.info({ name: deviceName('lin0') })).toMatchObject({ suspended: true });
      expect(dm.info({ uuid: deviceUuid('DMGOLD-lin2-uuid') })).toMatchObject({ name: 'lin2', uuid: 'DMGOLD-lin2-uuid', readOnly: true });
      expect(dm.info({ dev: lin0Dev })).toMatchObject({ name: 'lin0', liveTable: true });
    }));
  it('infoColumns list + info of each', () =>
    replay('infoColumns', ({ dm }) => {
      const infos = dm.list().map((e) => dm.info({ name: e.name }));
      expect(infos.map((i) => i?.readOnly)).toEqual([false, false, true]);
    }));
  it('infoMissing info of a missing device is null', () =>
    replay('infoMissing', ({ dm }) => expect(dm.info({ name: deviceName('nosuchdev') })).toBeNull()));
  it('tableInactiveEmpty0/tableInactiveLin0 table --inactive, tableLin0 table, tablePool thin-pool table', () =>
    replay(['tableInactiveEmpty0', 'tableLin0', 'tableInactiveLin0', 'tablePool'], ({ dm }) => {
      expect(dm.table({ name: deviceName('empty0') }, { inactive: true })).toEqual([
        { type: 'zero', startSector: sectors(0n), lengthSectors: sectors(1024n) },
      ]);
      expect(dm.table({ name: deviceName('lin0') })).toEqual([linear(2048n, '7:2', 0n)]);
      expect(dm.table({ name: deviceName('lin0') }, { inactive: true })).toEqual([linear(4096n, '7:2', 0n)]);
      expect(dm.table({ name: deviceName('pool') })).toEqual([
        {
          type: 'thin-pool',
          startSector: sectors(0n),
          lengthSectors: sectors(2097152n),
          metadataDevice: '7:0',
          dataDevice: '7:1',
          dataBlockSizeSectors: 128,
          lowWaterMarkBlocks: 32768n,
          features: [],
        },
      ]);
    }));
  it('tableAll list + table of each', () =>
    replay('tableAll', ({ dm }) => {
      const lines = dm.list().map((e) => dm.table({ name: e.name }).map((t) => t.type));
      expect(lines).toEqual([['zero'], ['linear'], ['linear']]);
    }));
  it('lsTargetLinear list + status of each (ls --target linear)', () =>
    replay('lsTargetLinear', ({ dm }) => {
      const linears = dm.list().filter((e) => dm.status({ name: e.name }).some((t) => t.type === 'linear'));
      expect(linears.map((e) => e.name)).toEqual(['lin0', 'lin2']);
    }));
  it('statusLin0 status, statusPool/statusPoolHeldRoot pool status, statusThin0 thin status', () =>
    replay(['statusLin0', 'statusPool', 'statusThin0', 'statusPoolHeldRoot'], ({ dm }) => {
      expect(dm.status({ name: deviceName('lin0') })).toEqual([
        { startSector: sectors(0n), lengthSectors: sectors(2048n), type: 'linear', params: '' },
      ]);
      const pool = dm.status({ name: deviceName('pool') })[0]!;
      expect(parseThinPoolStatus(pool.params)).toMatchObject({ transactionId: 0n, usedMetadataBlocks: 1649n, heldMetadataRoot: null });
      expect(parseThinStatus(dm.status({ name: deviceName('thin0') })[0]!.params)).toEqual({
        state: 'ok',
        mappedSectors: 0n,
        highestMappedSector: null,
      });
      expect(parseThinPoolStatus(dm.status({ name: deviceName('pool') })[0]!.params)).toMatchObject({
        transactionId: 1n,
        heldMetadataRoot: 24n,
      });
    }));
  // Separate sessions: DmControl remembers the size that worked per command, as one dmsetup run does.
  it('tableBig0 table of 2000 targets: DM_BUFFER_FULL_FLAG, doubling 16 KiB -> 128 KiB', () =>
    replay('tableBig0', ({ dm }) => {
      const t = dm.table({ name: deviceName('big0') });
      expect(t).toHaveLength(2000);
      expect(t[1999]).toEqual(linear(1n, '7:2', 1999n, 1999n));
    }));
  it('statusBig0 status of 2000 targets, the same growth', () =>
    replay('statusBig0', ({ dm }) => expect(dm.status({ name: deviceName('big0') })).toHaveLength(2000)));
  it('statusTargetThin status of every device (a BUFFER_FULL inside, then the size remembered)', () =>
    replay('statusTargetThin', ({ dm }) => {
      const thins = dm.list().flatMap((e) =>
        dm
          .status({ name: e.name })
          .filter((t) => t.type === 'thin')
          .map((t) => `${e.name}: ${t.params}`),
      );
      expect(thins).toEqual(['snap1: 0 -', 'thin0: 0 -']);
    }));
  it('tableTargetThinPool table of every device', () =>
    replay('tableTargetThinPool', ({ dm }) => {
      const pools = dm.list().flatMap((e) =>
        dm
          .table({ name: e.name })
          .filter((t) => t.type === 'thin-pool')
          .map(() => e.name),
      );
      expect(pools).toEqual(['pool']);
    }));
  it('statusMissingEnxio status of a missing device -> DmError ENXIO', () =>
    replay('statusMissingEnxio', async ({ dm }) =>
      expect(await dmErrorOf(() => dm.status({ name: deviceName('nosuchdev') }))).toMatchObject({
        code: 'ENXIO',
        command: 'DM_TABLE_STATUS',
        device: 'nosuchdev',
      }),
    ));
  it('depsLin0/depsLin0Devname deps, depsBig0 deps of 2000 targets, depsThin0 thin deps', () =>
    replay(['depsLin0', 'depsLin0Devname', 'depsBig0', 'depsThin0'], ({ dm }) => {
      expect(dm.deps({ name: deviceName('lin0') })).toEqual([{ major: 7, minor: 2 }]);
      expect(dm.deps({ name: deviceName('lin0') })).toEqual([{ major: 7, minor: 2 }]);
      expect(dm.deps({ name: deviceName('big0') })).toEqual([{ major: 7, minor: 2 }]);
      expect(dm.deps({ name: deviceName('thin0') })).toEqual([{ major: 254, minor: 4 }]);
    }));
  it('lsTree and lsTreePool list + deps by dev (ls --tree)', () =>
    replay(['lsTree', 'lsTreePool'], ({ dm }) => {
      expect(dm.list().map((e) => dm.deps({ dev: e.dev }).length)).toEqual([0, 1, 1]);
      const tree = Object.fromEntries(dm.list().map((e) => [e.name, dm.deps({ dev: e.dev }).map((d) => `${d.major}:${d.minor}`)]));
      expect(tree).toEqual({
        big0: ['7:2'],
        empty0: [],
        lin1: ['7:2'],
        lin2: ['7:2'],
        pool: ['7:1', '7:0'],
        snap1: ['254:4'],
        thin0: ['254:4'],
      });
    }));
});

describe('replay: suspend, resume, wait, geometry, rename', () => {
  it('suspend, resume, suspend --nolockfs --noflush, resume --noflush', () =>
    replay(['suspendLin0', 'resumeLin0', 'suspendNoLockfsNoFlush', 'resumeNoFlush'], async ({ dm }) => {
      expect(await dm.suspend({ name: deviceName('lin0') })).toMatchObject({ suspended: true });
      expect(await dm.resume({ name: deviceName('lin0') })).toMatchObject({ suspended: false });
      expect(await dm.suspend({ name: deviceName('lin0') }, { noFlush: true, skipLockfs: true })).toMatchObject({ suspended: true });
      expect(await dm.resume({ name: deviceName('lin0') }, { noFlush: true })).toMatchObject({ suspended: false });
    }));
  it('suspendThin0 suspend thin0, messageCreateSnap create_snap while suspended, resumeThin0 resume', async () => {
    const s = await replay(['suspendThin0', 'messageCreateSnap', 'resumeThin0'], async ({ dm }) => {
      await dm.suspend({ name: deviceName('thin0') });
      createSnap(dm, { name: deviceName('pool') }, thinId(1), thinId(0));
      await dm.resume({ name: deviceName('thin0') });
    });
    expect(s.nodes.ops).toEqual(['add thin0 254:5']);
  });
  it('setGeometryLin0 setGeometry', () =>
    replay('setGeometryLin0', ({ dm }) =>
      dm.setGeometry({ name: deviceName('lin0') }, { cylinders: 1, heads: 64, sectors: 32, start: 0 }),
    ));
  it('waitLin0 waitEvent returns at once when the event number differs', () =>
    replay('waitLin0', async ({ dm }) =>
      expect(await dm.waitEvent({ name: deviceName('lin0') }, 99)).toMatchObject({ name: 'lin0', eventNr: 0 }),
    ));
  it('renameLin0 rename moves the node, renameSetUuid setUuid', async () => {
    const nodes = new MemoryNodes({ lin0: lin0Dev });
    const s = await replay(
      ['renameLin0', 'renameSetUuid'],
      async ({ dm }) => {
        expect(await dm.rename({ name: deviceName('lin0') }, deviceName('lin1'))).toMatchObject({ name: 'lin1' });
        expect(dm.setUuid({ name: deviceName('lin1') }, deviceUuid('DMGOLD-lin1-uuid'))).toMatchObject({ uuid: 'DMGOLD-lin1-uuid' });
      },
      { nodes },
    );
    expect(s.nodes.ops).toEqual(['rename lin0 lin1']);
    expect([...s.nodes.nodes.keys()]).toEqual(['lin1']);
  });
  it('renameMissingEnxio rename of a missing device -> ENXIO', () =>
    replay('renameMissingEnxio', async ({ dm }) =>
      expect(await dmErrorOf(() => dm.rename({ name: deviceName('nosuchdev') }, deviceName('foo')))).toMatchObject({
        code: 'ENXIO',
        command: 'DM_DEV_RENAME',
        device: 'nosuchdev',
      }),
    ));
});

describe('replay: messages', () => {
  it('thin-pool messages: create_thin, create_snap, set_transaction_id, metadata snap, delete', () =>
    replay(
      [
        'messageCreateThin',
        'messageCreateSnap',
        'messageSetTransactionId',
        'messageReserveMetadataSnap',
        'messageReleaseMetadataSnap',
        'messageDeleteSnap1',
        'messageDeleteThin0',
      ],
      ({ dm }) => {
        const pool = { name: deviceName('pool') };
        createThin(dm, pool, thinId(0));
        createSnap(dm, pool, thinId(1), thinId(0));
        setTransactionId(dm, pool, 0n, 1n);
        reserveMetadataSnap(dm, pool);
        releaseMetadataSnap(dm, pool);
        deleteThin(dm, pool, thinId(1));
        deleteThin(dm, pool, thinId(0));
      },
    ));
  it('message returns "" when the target sends no data', () =>
    replay('messageCreateThin', ({ dm }) => expect(dm.message({ name: deviceName('pool') }, 0n, 'create_thin 0')).toBe('')));
  for (const [n, code, f] of [
    ['messageMissingEnxio', 'ENXIO', (dm: ReplaySession['dm']) => dm.message({ name: deviceName('nosuchdev') }, 0n, 'hello')],
    ['messageLinearEinval', 'EINVAL', (dm: ReplaySession['dm']) => dm.message({ name: deviceName('lin1') }, 0n, 'hello')],
    ['messageCreateThinAgainEexist', 'EEXIST', (dm: ReplaySession['dm']) => createThin(dm, { name: deviceName('pool') }, thinId(0))],
    ['messageBogusEinval', 'EINVAL', (dm: ReplaySession['dm']) => dm.message({ name: deviceName('pool') }, 0n, 'bogus_message 1')],
    ['messageSetTransactionIdEinval', 'EINVAL', (dm: ReplaySession['dm']) => setTransactionId(dm, { name: deviceName('pool') }, 0n, 5n)],
    ['messageDeleteOpenEbusy', 'EBUSY', (dm: ReplaySession['dm']) => deleteThin(dm, { name: deviceName('pool') }, thinId(1))],
    ['messageDeleteMissingEnodata', 'ENODATA', (dm: ReplaySession['dm']) => deleteThin(dm, { name: deviceName('pool') }, thinId(7))],
  ] as const) {
    it(`${n}: ${command(n).cmd} -> DmError ${code}`, () =>
      replay(n, async ({ dm }) => {
        const err = await dmErrorOf(() => f(dm));
        expect(err.code).toBe(code);
        expect(err.command).toBe('DM_TARGET_MSG');
        expect(err.device).toBe(n === 'messageMissingEnxio' ? 'nosuchdev' : n === 'messageLinearEinval' ? 'lin1' : 'pool');
      }));
  }
  it('cancelDeferredRemove sends "@cancel_deferred_remove" at sector 0 (synthetic, from messageCreateThin)', () => {
    const version = dmRecord('messageCreateThin', 'DM_VERSION');
    const msg = dmRecord('messageCreateThin', 'DM_TARGET_MSG');
    const rec = synthetic(
      'DM_TARGET_MSG',
      { version: DM_COMMAND_MIN_VERSION.DM_TARGET_MSG, name: 'pool' },
      encodeTargetMsg(0n, '@cancel_deferred_remove'),
      msg.after,
    );
    const s = replayDeviceMapper(new ReplayTransport([version, rec]));
    s.dm.cancelDeferredRemove({ name: deviceName('pool') });
    s.finish();
  });
});

describe('replay: remove', () => {
  it('removeSnap1 remove drops the node; removeThin0, removePool', async () => {
    const nodes = new MemoryNodes({ snap1: { major: 254, minor: 6 }, thin0: { major: 254, minor: 5 }, pool: { major: 254, minor: 4 } });
    const s = await replay(
      ['removeSnap1', 'removeThin0', 'removePool'],
      async ({ dm }) => {
        await dm.remove({ name: deviceName('snap1') });
        await dm.remove({ name: deviceName('thin0') });
        await dm.remove({ name: deviceName('pool') });
      },
      { nodes },
    );
    expect(s.nodes.ops).toEqual(['remove snap1', 'remove thin0', 'remove pool']);
  });
  it('removeMissingEnxio remove of a missing device -> ENXIO; removePoolEbusy of a device in use -> EBUSY (no retry asked)', () =>
    replay(['removeMissingEnxio', 'removePoolEbusy'], async ({ dm }) => {
      expect(await dmErrorOf(() => dm.remove({ name: deviceName('nosuchdev') }))).toMatchObject({
        code: 'ENXIO',
        command: 'DM_DEV_REMOVE',
      });
      expect(await dmErrorOf(() => dm.remove({ name: deviceName('pool') }))).toMatchObject({
        code: 'EBUSY',
        command: 'DM_DEV_REMOVE',
        device: 'pool',
      });
    }));
  it('removeRetryBig0 remove --retry', () =>
    replay('removeRetryBig0', ({ dm }) => dm.remove({ name: deviceName('big0') }, { retry: true })));
  it('retry: EBUSY twice (removePoolEbusy), then success (removePool), with backoff off the event loop', async () => {
    const busy = dmRecord('removePoolEbusy', 'DM_DEV_REMOVE');
    const s = replayDeviceMapper(
      new ReplayTransport([dmRecord('removePoolEbusy', 'DM_VERSION'), busy, busy, dmRecord('removePool', 'DM_DEV_REMOVE')]),
    );
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await s.dm.remove({ name: deviceName('pool') }, { retry: { attempts: 5, firstDelayMs: 5, maxDelayMs: 20 } });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    s.finish();
  });
  it('retry gives up after its attempts with the EBUSY', async () => {
    const busy = dmRecord('removePoolEbusy', 'DM_DEV_REMOVE');
    const s = replayDeviceMapper(new ReplayTransport([dmRecord('removePoolEbusy', 'DM_VERSION'), busy, busy, busy]));
    const err = await dmErrorOf(() =>
      s.dm.remove({ name: deviceName('pool') }, { retry: { attempts: 3, firstDelayMs: 1, maxDelayMs: 2 } }),
    );
    expect(err.code).toBe('EBUSY');
    s.finish();
  });
  it('deferred remove sends DM_DEFERRED_REMOVE; a device still open keeps its node (synthetic, from removePool)', async () => {
    const version = dmRecord('removePool', 'DM_VERSION');
    const req = { version: [4, 0, 0] as const, name: 'pool', flags: DmFlag.DM_DEFERRED_REMOVE, event_nr: 0x430000 };
    const after = encodeDmIoctl(
      {
        version: [4, 47, 0],
        name: 'pool',
        flags: DmFlag.DM_DEFERRED_REMOVE | DmFlag.DM_ACTIVE_PRESENT_FLAG,
        dev: encodeDev({ major: 254, minor: 4 }),
      },
      undefined,
      312,
    );
    const nodes = new MemoryNodes({ pool: { major: 254, minor: 4 } });
    const s = replayDeviceMapper(new ReplayTransport([version, synthetic('DM_DEV_REMOVE', req, undefined, after)]), { nodes });
    await s.dm.remove({ name: deviceName('pool') }, { deferred: true });
    expect(nodes.ops).toEqual([]);
    s.finish();
  });
  it('removeAll, then stale nodes dropped as libdevmapper does', async () => {
    const nodes = new MemoryNodes({ lin1: lin0Dev, empty0: { major: 254, minor: 2 }, lin2: { major: 254, minor: 1 } });
    const s = await replay('removeAll', ({ dm }) => dm.removeAll(), { nodes });
    expect(s.nodes.list()).toEqual([]);
  });
});

describe('replay: udev running (noudevsync/plain captures: flags 0x200000 on create, 0x600000 after)', () => {
  const noUdevSync: GoldenName[] = ['noUdevSyncCreate', 'noUdevSyncSuspend', 'noUdevSyncResume', 'noUdevSyncRename', 'noUdevSyncRemove'];
  const plain: GoldenName[] = ['plainCreate', 'plainSuspend', 'plainResume', 'plainRemove'];
  for (const ns of [noUdevSync, plain]) {
    it(ns.join(', '), async () => {
      const s = await replay(
        ns,
        async ({ dm }) => {
          expect(dm.udevRunning).toBe(true);
          await dm.create(deviceName('lin0'), { table: [linear(2048n, '/dev/loop2', 0n)] });
          await dm.suspend({ name: deviceName('lin0') });
          await dm.resume({ name: deviceName('lin0') });
          if (ns.length === 5) {
            await dm.rename({ name: deviceName('lin0') }, deviceName('lin1'));
            await dm.remove({ name: deviceName('lin1') });
          } else await dm.remove({ name: deviceName('lin0') });
        },
        { udev: 'on', udevWaitMs: 0 },
      );
      // udev made no node here (no udev in a unit test): the bounded wait gives up and we fill in.
      expect(s.nodes.list()).toEqual([]);
    });
  }
});

describe('replay: the checker itself', () => {
  it('refuses a request that differs from the capture', async () => {
    const s = replayDeviceMapper(ReplayTransport.of('infoLin0'));
    expect(() => s.dm.info({ name: deviceName('lin1') })).toThrow(ReplayMismatch);
  });
  it('bad input reaches no transport', async () => {
    const s = replayDeviceMapper(ReplayTransport.of('infoLin0'));
    expect(() => s.dm.info({ name: 'a/b' as DeviceName })).toThrow(InvalidArgumentError);
    await expect(s.dm.create('x'.repeat(128) as DeviceName)).rejects.toThrow(InvalidArgumentError);
    expect(() => s.dm.loadTable({ name: deviceName('lin0') }, [])).toThrow(InvalidArgumentError);
    expect(() => createThin(s.dm, { name: deviceName('pool') }, (2 ** 24) as ThinId)).toThrow(InvalidArgumentError);
    expect(s.replay.calls.map((c) => c.command)).toEqual(['DM_VERSION']);
    expect(s.replay.remaining).toBe(1);
  });
  it('armPoll sends DM_DEV_ARM_POLL 4.36.0 (synthetic: no capture has it)', () => {
    const version = dmRecord('infoLin0', 'DM_VERSION');
    const rec = synthetic(
      'DM_DEV_ARM_POLL',
      { version: DM_COMMAND_MIN_VERSION.DM_DEV_ARM_POLL },
      undefined,
      encodeDmIoctl({ version: [4, 47, 0] }, undefined, 312),
    );
    const s = replayDeviceMapper(new ReplayTransport([version, rec]));
    s.dm.armPoll();
    s.finish();
  });
});
