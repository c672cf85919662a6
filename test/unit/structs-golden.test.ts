// Every record of the golden captures (test/golden) against the struct layer: headers and
// payloads decode to what the capture tool and dmsetup/losetup printed, and re-encoding each
// request from its decoded values gives libdevmapper's/losetup's bytes exactly.
//
// Where libdevmapper sets something the dm layer will set differently, the request is still
// rebuilt from its decoded values here (so these tests pin the encoders, not policy):
// - flags always carry 0x4, libdevmapper's private DM_EXISTS_FLAG; the kernel ignores it.
// - data_size is at least 16 KiB (LIBDM_MIN_DATA_SIZE) and TABLE_LOAD's is an over-estimate
//   (libdmTableLoadDataSize); the kernel reads by `next`, any size >= the payload works.
// - event_nr's high 16 bits carry libdevmapper's udev flags (DmUdevFlag), not kernel ABI.
// - params go verbatim: libdevmapper doubles backslashes; none of these tables has one.
import { describe, expect, test } from 'vitest';
import {
  BLKGETSIZE64,
  DM_COMMANDS,
  DM_IOCTL_SIZE,
  DmFlag,
  LIBDM_MIN_DATA_SIZE,
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
  LOOP_GET_STATUS64,
  LOOP_SET_CAPACITY,
  LOOP_SET_DIRECT_IO,
  LoFlag,
  decodeDev,
  decodeDmBuffer,
  decodeDmIoctl,
  decodeLoopConfig,
  decodeLoopInfo64,
  decodeNameList,
  decodeStringPayload,
  decodeTableLoadSpecs,
  decodeTargetDeps,
  decodeTargetMsg,
  decodeTargetSpecs,
  decodeTargetVersions,
  decodeU64,
  dmPayload,
  encodeDmIoctl,
  encodeLoopConfig,
  encodeLoopInfo64,
  encodeTargetVersionRequest,
  formatGeometry,
  libdmTableLoadDataSize,
  type AnyDmPayloadCodec,
  type DmCommand,
  type DmCommandName,
  type DmIoctl,
  type DmTargetSpec,
} from '../../src/structs/index.js';
import {
  GOLDEN,
  command,
  dmRecords,
  loadCommands,
  loadRecords,
  recordsOf,
  type GoldenBufRecord,
  type GoldenDmHeader,
  type GoldenName,
} from '../support/golden.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const devText = (dev: bigint, sep = ':'): string => {
  const { major, minor } = decodeDev(dev);
  return `${major}${sep}${minor}`;
};

function expectHeader(h: DmIoctl, g: GoldenDmHeader): void {
  expect(h.version).toEqual(g.version);
  expect(h.data_size).toBe(g.data_size);
  expect(h.data_start).toBe(g.data_start);
  expect(h.target_count).toBe(g.target_count);
  expect(h.open_count).toBe(g.open_count);
  expect(h.flags).toBe(Number(g.flags));
  expect(h.event_nr).toBe(Number(g.event_nr));
  expect(h.dev).toBe(BigInt(g.dev));
  expect(h.name).toBe(g.name);
  expect(h.uuid).toBe(g.uuid);
}

/**
 * A payload decoded by the command's codec (src/structs/commands.ts) and encoded again, or
 * undefined when the command has no codec for that direction or the header says there is none.
 */
function roundTrip(codec: AnyDmPayloadCodec | undefined, h: DmIoctl, payload: Uint8Array): Uint8Array | undefined {
  const value = codec?.decode(payload, h);
  return value === undefined ? undefined : codec!.encode(value as never);
}

const dm = dmRecords();

describe('golden dm records', () => {
  test("TABLE_LOAD: specs carry no status, data_size follows libdevmapper's rule", () => {
    const loads = dm.filter((r) => r.req_name === 'DM_TABLE_LOAD');
    expect(loads.length).toBeGreaterThan(0);
    for (const rec of loads) {
      const h = decodeDmIoctl(rec.before);
      const specs = decodeTableLoadSpecs(dmPayload(rec.before, h), h.target_count);
      expect(specs.every((s) => s.status === 0)).toBe(true);
      expect(libdmTableLoadDataSize(specs)).toBe(h.data_size);
    }
  });

  test('GET_TARGET_VERSION: the name in the header, an empty payload', () => {
    const gets = dm.filter((r) => r.req_name === 'DM_GET_TARGET_VERSION');
    expect(gets.map((r) => decodeDmIoctl(r.before).name)).toEqual(['thin-pool', 'linear']);
    for (const rec of gets) {
      const h = decodeDmIoctl(rec.before);
      expect(dmPayload(rec.before, h).every((b) => b === 0)).toBe(true);
      expect(encodeTargetVersionRequest(h.name)).toHaveLength(0);
    }
  });

  test('GOLDEN names every captured command once', () => {
    expect(Object.values(GOLDEN).sort((x, y) => x - y)).toEqual(loadCommands().map((c) => c.n));
  });

  test('all three capture files are there', () => {
    expect(dm.length).toBe(252); // + 30 loop records = all 282 ioctls of the three files
    expect(new Set(dm.map((r) => r.file)).size).toBe(3);
  });

  test.each(dm.map((r) => [`${r.file} #${r.seq} ${r.label} ${r.req_name}`, r] as const))('%s', (_title, rec) => {
    const cmd = rec.req_name as DmCommandName;
    expect(Object.hasOwn(DM_COMMANDS, cmd)).toBe(true);
    const spec: DmCommand = DM_COMMANDS[cmd];
    expect(Number(rec.req)).toBe(spec.request);
    // libdevmapper sends each command's minimum version: the table's `version`.
    expect(decodeDmIoctl(rec.before).version).toEqual(spec.version);

    // Request: header as printed, then rebuilt byte for byte (header fields, payload, zero fill).
    const hb = decodeDmIoctl(rec.before);
    expectHeader(hb, rec.dm_before!);
    const payload = roundTrip(spec.requestPayload, hb, dmPayload(rec.before, hb));
    const rebuilt = encodeDmIoctl(
      {
        version: hb.version,
        flags: hb.flags,
        event_nr: hb.event_nr,
        dev: hb.dev,
        name: hb.name,
        uuid: hb.uuid,
        target_count: hb.target_count,
      },
      payload,
      hb.data_size,
    );
    expect(rebuilt.length).toBe(rec.size);
    expect(hex(rebuilt)).toBe(hex(rec.before));
    expect(hb.data_size).toBeGreaterThanOrEqual(LIBDM_MIN_DATA_SIZE);
    expect(decodeDmBuffer(cmd, rec.before, 'request')).toBeTruthy();

    // Reply: header as printed, the whole buffer decodes, JSON-serialisable.
    const ha = decodeDmIoctl(rec.after);
    expectHeader(ha, rec.dm_after!);
    const decoded = decodeDmBuffer(cmd, rec.after, 'reply') as { buffer_full?: boolean; payload: unknown };
    expect(() => JSON.stringify(decoded)).not.toThrow();
    const full = (ha.flags & DmFlag.DM_BUFFER_FULL_FLAG) !== 0;
    expect(decoded.buffer_full === true).toBe(full);
    // A command that returns data has a reply codec, and it gives the kernel's bytes back.
    expect(spec.replyPayload !== undefined).toBe(spec.returnsData);
    if (rec.ret === 0 && !full && spec.returnsData) {
      const replyPayload = dmPayload(rec.after, ha);
      const rebuiltReply = roundTrip(spec.replyPayload, ha, replyPayload);
      // Only DM_TARGET_MSG may have nothing to give back (no DM_DATA_OUT_FLAG).
      if (rebuiltReply === undefined) expect([cmd, replyPayload.length]).toEqual(['DM_TARGET_MSG', 0]);
      else expect(hex(rebuiltReply)).toBe(hex(replyPayload));
    }
  });
});

// ---- what dmsetup printed, rebuilt from the decoded replies ----

function okReplies(n: GoldenName, cmd: DmCommandName): { h: DmIoctl; payload: Uint8Array; rec: GoldenBufRecord }[] {
  return recordsOf(n)
    .filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === cmd && r.ret === 0)
    .map((rec) => ({ rec, h: decodeDmIoctl(rec.after), payload: new Uint8Array(0) }))
    .filter(({ h }) => (h.flags & DmFlag.DM_BUFFER_FULL_FLAG) === 0)
    .map((x) => ({ ...x, payload: dmPayload(x.rec.after, x.h) }));
}

function one<T>(list: readonly T[]): T {
  expect(list.length).toBe(1);
  return list[0]!;
}

const specLine = (s: DmTargetSpec): string => `${s.sector_start} ${s.length} ${s.target_type} ${s.params}`;

describe('golden replies match what dmsetup printed', () => {
  test.each(['targets', 'targetVersion'] as const)('dmsetup targets / target-version (%s)', (n) => {
    const replies = [...okReplies(n, 'DM_LIST_VERSIONS'), ...okReplies(n, 'DM_GET_TARGET_VERSION')];
    const lines = replies.flatMap(({ payload }) =>
      decodeTargetVersions(payload).map((t) => `${t.name.padEnd(16)} v${t.version.join('.')}`),
    );
    expect(`${lines.join('\n')}\n`).toBe(command(n).stdout);
  });

  test.each(['lsEmpty', 'ls', 'lsAfterRemoveAll'] as const)('dmsetup ls (%s)', (n) => {
    const names = decodeNameList(one(okReplies(n, 'DM_LIST_DEVICES')).payload);
    const text = names.length === 0 ? 'No devices found\n' : names.map((e) => `${e.name}\t(${devText(e.dev)})\n`).join('');
    expect(text).toBe(command(n).stdout);
  });

  test('the tail of newer kernels: event_nr counts renames (dmsetup status --target thin: lin1 renamed twice)', () => {
    const names = decodeNameList(okReplies('statusTargetThin', 'DM_LIST_DEVICES')[0]!.payload);
    expect(names.map((e) => [e.name, e.event_nr, e.flags])).toEqual([
      ['big0', 0, 0],
      ['empty0', 0, 0],
      ['lin1', 2, 0],
      ['lin2', 0, 0],
      ['pool', 0, 0],
      ['snap1', 0, 0],
      ['thin0', 0, 0],
    ]);
    expect(names.every((e) => e.uuid === undefined)).toBe(true); // no DM_UUID_FLAG asked
  });

  test('dmsetup ls --target linear', () => {
    const lines = okReplies('lsTargetLinear', 'DM_TABLE_STATUS')
      .filter(({ h, payload }) => decodeTargetSpecs(payload, h.target_count).some((s) => s.target_type === 'linear'))
      .map(({ h }) => `${h.name}\t(${devText(h.dev, ', ')})\n`);
    expect(lines.join('')).toBe(command('lsTargetLinear').stdout);
  });

  test.each(['lsTree', 'lsTreePool'] as const)('dmsetup ls --tree (%s)', (n) => {
    const names = decodeNameList(one(okReplies(n, 'DM_LIST_DEVICES')).payload);
    const deps = new Map<bigint, bigint[]>();
    for (const { h, payload } of okReplies(n, 'DM_TABLE_DEPS')) deps.set(h.dev, decodeTargetDeps(payload));
    const nameOf = new Map(names.map((e) => [e.dev, e.name]));
    const isChild = new Set([...deps.values()].flat());
    const lines: string[] = [];
    const walk = (dev: bigint, prefix: string): void => {
      const kids = deps.get(dev) ?? [];
      kids.forEach((kid, i) => {
        const last = i === kids.length - 1;
        lines.push(`${prefix}${last ? '`-' : '|-'}${nameOf.get(kid) ?? ''} (${devText(kid)})`);
        walk(kid, prefix + (last ? '   ' : '|  '));
      });
    };
    for (const e of names) {
      if (isChild.has(e.dev)) continue;
      lines.push(`${e.name} (${devText(e.dev)})`);
      walk(e.dev, ' ');
    }
    expect(`${lines.join('\n')}\n`).toBe(command(n).stdout);
  });

  // Table and status lines; with no device named, dmsetup prefixes each with "name: ".
  test.each([
    ['tableInactiveEmpty0', ''],
    ['tableLin0', ''],
    ['tableAll', ''],
    ['statusLin0', ''],
    ['tableInactiveLin0', ''],
    ['tableBig0', ''],
    ['statusBig0', ''],
    ['statusPool', ''],
    ['tablePool', ''],
    ['statusThin0', ''],
    ['statusPoolHeldRoot', ''],
    ['statusTargetThin', 'thin'],
    ['tableTargetThinPool', 'thin-pool'],
  ] as const)('dmsetup table/status (%s)', (n, target) => {
    const replies = okReplies(n, 'DM_TABLE_STATUS');
    const prefixed = !/ (table|status)( --inactive)? [a-z0-9]+$/.test(command(n).cmd) || target !== '';
    const lines = replies.flatMap(({ h, payload }) =>
      decodeTargetSpecs(payload, h.target_count)
        .filter((s) => target === '' || s.target_type === target)
        .map((s) => `${prefixed ? `${h.name}: ` : ''}${specLine(s)}\n`),
    );
    expect(lines.join('')).toBe(command(n).stdout);
  });

  test('the 2000-target table came back whole after libdevmapper doubled the buffer 16 -> 128 KiB (dmsetup table big0)', () => {
    const sizes = recordsOf('tableBig0')
      .filter((r) => r.req_name === 'DM_TABLE_STATUS')
      .map((r) => (r as GoldenBufRecord).size);
    expect(sizes).toEqual([16384, 32768, 65536, 131072]);
    const { h, payload } = one(okReplies('tableBig0', 'DM_TABLE_STATUS'));
    const specs = decodeTargetSpecs(payload, h.target_count);
    expect(specs).toHaveLength(2000);
    expect(specs[1999]).toEqual({ sector_start: 1999n, length: 1n, status: 0, target_type: 'linear', params: '7:2 1999' });
  });

  test.each(['infoEmpty0Inactive', 'infoLin0', 'infoByUuid', 'infoByMajorMinor', 'infoLin0Suspended'] as const)(
    'dmsetup info (%s), from the DEV_STATUS header',
    (n) => {
      const { h } = one(okReplies(n, 'DM_DEV_STATUS'));
      const tables = [h.flags & DmFlag.DM_ACTIVE_PRESENT_FLAG ? 'LIVE' : '', h.flags & DmFlag.DM_INACTIVE_PRESENT_FLAG ? 'INACTIVE' : '']
        .filter(Boolean)
        .join(' & ');
      const { major, minor } = decodeDev(h.dev);
      const expected = [
        `Name:              ${h.name}`,
        `State:             ${h.flags & DmFlag.DM_SUSPEND_FLAG ? 'SUSPENDED' : 'ACTIVE'}${h.flags & DmFlag.DM_READONLY_FLAG ? ' (READ-ONLY)' : ''}`,
        `Tables present:    ${tables || 'None'}`,
        `Open count:        ${h.open_count}`,
        `Event number:      ${h.event_nr}`,
        `Major, minor:      ${major}, ${minor}`,
        `Number of targets: ${h.target_count}`,
        ...(h.uuid ? [`UUID: ${h.uuid}`] : []),
      ];
      // "Read Ahead" comes from BLKRAGET on the device node, not from these buffers.
      const printed = command(n)
        .stdout.split('\n')
        .filter((l) => l !== '' && !l.startsWith('Read Ahead:'));
      expect(printed).toEqual(expected);
    },
  );

  test('dmsetup info -c', () => {
    const rows = command('infoColumns')
      .stdout.trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const replies = okReplies('infoColumns', 'DM_DEV_STATUS');
    expect(rows).toHaveLength(replies.length);
    replies.forEach(({ h }, i) => {
      const [name, maj, min, stat, open, targ, event, uuid] = rows[i]!;
      const { major, minor } = decodeDev(h.dev);
      expect([name, Number(maj), Number(min), Number(open), Number(targ), Number(event), uuid ?? '']).toEqual([
        h.name,
        major,
        minor,
        h.open_count,
        h.target_count,
        h.event_nr,
        h.uuid,
      ]);
      expect(stat![0]).toBe(h.flags & DmFlag.DM_ACTIVE_PRESENT_FLAG ? 'L' : '-');
      expect(stat![3]).toBe(h.flags & DmFlag.DM_READONLY_FLAG ? 'r' : 'w');
    });
  });

  test.each(['depsLin0', 'depsLin0Devname', 'depsBig0', 'depsThin0'] as const)('dmsetup deps (%s)', (n) => {
    const devs = decodeTargetDeps(one(okReplies(n, 'DM_TABLE_DEPS')).payload);
    const devname = command(n).cmd.includes('-o devname');
    const shown = devs.map((d) => {
      const { major, minor } = decodeDev(d);
      return devname ? `(loop${minor})` : `(${major}, ${minor})`; // -o devname: all deps here are loops (major 7)
    });
    if (devname) expect(devs.every((d) => decodeDev(d).major === 7)).toBe(true);
    expect(`${devs.length} dependencies\t: ${shown.join(' ')}\n`).toBe(command(n).stdout);
  });

  test('message payloads carry what dmsetup message was given (dmsetup message)', () => {
    const msgs = loadRecords().filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === 'DM_TARGET_MSG');
    expect(msgs.length).toBe(14);
    for (const rec of msgs) {
      const h = decodeDmIoctl(rec.before);
      const { sector, message } = decodeTargetMsg(dmPayload(rec.before, h));
      const m = /^dmsetup message (\S+) (\d+) (.*)$/.exec(command(rec.n).cmd)!;
      expect([h.name, String(sector), message]).toEqual([m[1], m[2], m[3]]);
      // No thin-pool message returns output: no DM_DATA_OUT_FLAG, nothing to decode.
      expect(decodeDmIoctl(rec.after).flags & DmFlag.DM_DATA_OUT_FLAG).toBe(0);
    }
  });

  test('rename and setgeometry strings', () => {
    const str = (n: GoldenName, cmd: DmCommandName): string => {
      const rec = recordsOf(n).find((r) => r.req_name === cmd) as GoldenBufRecord;
      return decodeStringPayload(dmPayload(rec.before, decodeDmIoctl(rec.before)), 'string');
    };
    expect(str('setGeometryLin0', 'DM_DEV_SET_GEOMETRY')).toBe(formatGeometry({ cylinders: 1, heads: 64, sectors: 32, start: 0 }));
    expect(str('renameLin0', 'DM_DEV_RENAME')).toBe('lin1');
    expect(str('renameSetUuid', 'DM_DEV_RENAME')).toBe('DMGOLD-lin1-uuid');
  });

  test('a reply for a command without data has data_size 305 (offsetof data) and stale request bytes after it', () => {
    const rec = recordsOf('renameLin0').find((r) => r.req_name === 'DM_DEV_RENAME') as GoldenBufRecord;
    const h = decodeDmIoctl(rec.after);
    expect(h.data_size).toBe(305);
    expect(dmPayload(rec.after, h)).toHaveLength(0);
    expect(decodeStringPayload(rec.after.subarray(DM_IOCTL_SIZE), 'stale')).toBe('lin1');
  });
});

// ---- loop ----

const loopRecords = loadRecords().filter((r) => r.fd_kind !== 'dm-control');
const LOOP_REQUESTS: Record<string, number> = {
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
  LOOP_GET_STATUS64,
  LOOP_SET_CAPACITY,
  LOOP_SET_DIRECT_IO,
  BLKGETSIZE64,
};

describe('golden loop records', () => {
  test('count', () => expect(loopRecords.length).toBe(30));

  test.each(loopRecords.map((r) => [`${r.file} #${r.seq} ${r.label} ${r.req_name}`, r] as const))('%s', (_title, rec) => {
    expect(Number(rec.req)).toBe(LOOP_REQUESTS[rec.req_name]);
    if (rec.kind === 'arg') return; // integer argument: the request number is all there is
    if (rec.req_name === 'BLKGETSIZE64') {
      // losetup -o 4096 --sizelimit 1048576: the device is sizelimit bytes. (Its `before` holds
      // an uninitialised 1: the kernel only writes.)
      expect(decodeU64(rec.after)).toBe(1048576n);
      return;
    }
    for (const buf of [rec.before, rec.after]) {
      if (rec.req_name === 'LOOP_CONFIGURE') {
        const cfg = decodeLoopConfig(buf);
        expect(hex(encodeLoopConfig(cfg))).toBe(hex(buf));
      } else {
        const info = decodeLoopInfo64(buf);
        expect(hex(encodeLoopInfo64(info))).toBe(hex(buf));
      }
    }
  });

  test.each(['loopFindByFile', 'loopListAll'] as const)('losetup -j / -a (%s) from LOOP_GET_STATUS64', (n) => {
    const infos = recordsOf(n).map((r) => decodeLoopInfo64((r as GoldenBufRecord).after));
    const lines = infos.map(
      (i) => `/dev/loop${i.lo_number}: [${String(i.lo_device).padStart(4, '0')}]:${i.lo_inode} (${i.lo_file_name})\n`,
    );
    const wanted = n === 'loopFindByFile' ? lines.filter((l) => l.includes('/lin.img)')) : lines;
    expect(wanted.join('')).toBe(command(n).stdout);
  });

  test.each([
    'loopAttachMeta',
    'loopAttachData',
    'loopAttachLin',
    'loopAttachReadOnlyOffset',
    'loopAttachBlockSize',
    'loopAttachLinAgain',
  ] as const)('losetup -f --show (%s): LOOP_CONFIGURE carries the options', (n) => {
    const recs = recordsOf(n);
    const free = recs.find((r) => r.req_name === 'LOOP_CTL_GET_FREE')!;
    expect(`/dev/loop${free.ret}\n`).toBe(command(n).stdout);
    const cfg = decodeLoopConfig((recs.find((r) => r.req_name === 'LOOP_CONFIGURE') as GoldenBufRecord).before);
    const argv = command(n).cmd;
    expect(cfg.info.lo_file_name).toBe(`/tmp/w/${/(\S+\.img)/.exec(argv)![1]}`);
    expect(cfg.fd).toBe(3);
    expect(cfg.block_size).toBe(argv.includes('-b 4096') ? 4096 : 0);
    expect(cfg.info.lo_offset).toBe(argv.includes('-o 4096') ? 4096n : 0n);
    expect(cfg.info.lo_sizelimit).toBe(argv.includes('--sizelimit 1048576') ? 1048576n : 0n);
    expect(cfg.info.lo_flags).toBe(argv.includes(' -r ') ? LoFlag.LO_FLAGS_READ_ONLY : 0);
  });
});
