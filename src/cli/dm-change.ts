// `devmapper dm` commands that change devices: create, load, clear, suspend, resume, remove,
// remove_all, rename, message, wait, setgeometry, mknodes. Records of the table in command.ts.
import { DEFAULT_REMOVE_RETRY } from '../dm/commands/remove.js';
import { deviceName, deviceUuid } from '../dm/names.js';
import { DmError } from '../ioctl/errors.js';
import { flag, str, type Command, type Invocation } from './command.js';
import {
  busyReason,
  checked,
  createHint,
  infoView,
  isJson,
  mustInfo,
  name0,
  NONE,
  ONE,
  OPTIONAL,
  optName0,
  sortedNames,
  tableFrom,
  withDm,
} from './dm-support.js';
import { json } from './output.js';
import { OperationError, UsageError } from './usage.js';

export const changeCommands: Command[] = [
  {
    name: 'create',
    summary: 'a new device, with a table (lines kept in command-line order), or none with --notable',
    usage: 'NAME (--table LINE... | --table-file F|- | --notable) [-u UUID] [-r]',
    options: {
      table: { type: 'string', multiple: true, arg: 'LINE', help: 'one table line: start length type params' },
      'table-file': { type: 'string', multiple: true, arg: 'F|-', help: 'table lines from a file, or - for stdin' },
      notable: { type: 'boolean', help: 'no table: load one later (dm load) and resume' },
      uuid: { type: 'string', short: 'u', arg: 'UUID', help: 'the device uuid' },
      readonly: { type: 'boolean', short: 'r', help: 'read-only device' },
    },
    positionals: ONE,
    run: (inv) => {
      const name = name0(inv);
      const table = tableFrom(inv.tokens);
      if (table !== undefined && flag(inv.values, 'notable')) throw new UsageError('--notable and a table exclude each other');
      if (table === undefined && !flag(inv.values, 'notable')) throw new UsageError('create needs --table, --table-file or --notable');
      const uuid = checked(deviceUuid, str(inv.values, 'uuid'));
      return withDm(async (d) => {
        try {
          const info = await d.create(name, {
            ...(uuid !== undefined ? { uuid } : {}),
            readOnly: flag(inv.values, 'readonly'),
            ...(table ? { table } : {}),
          });
          if (isJson(inv)) inv.out(json(infoView(info)));
        } catch (err) {
          throw createHint(d, err, { name, uuid, table: table ?? [] });
        }
      });
    },
  },
  {
    name: 'load',
    aliases: ['reload'],
    summary: 'load the inactive table (dm resume makes it live)',
    usage: 'NAME (--table LINE... | --table-file F|-) [-r]',
    options: {
      table: { type: 'string', multiple: true, arg: 'LINE', help: 'one table line: start length type params' },
      'table-file': { type: 'string', multiple: true, arg: 'F|-', help: 'table lines from a file, or - for stdin' },
      readonly: { type: 'boolean', short: 'r', help: 'read-only table' },
    },
    positionals: ONE,
    run: (inv) => {
      const name = name0(inv);
      const table = tableFrom(inv.tokens);
      if (table === undefined) throw new UsageError('load needs --table or --table-file');
      return withDm((d) => {
        mustInfo(d, { name });
        try {
          const info = d.loadTable({ name }, table, { readOnly: flag(inv.values, 'readonly') });
          if (isJson(inv)) inv.out(json(infoView(info)));
        } catch (err) {
          throw createHint(d, err, { name, uuid: undefined, table });
        }
      });
    },
  },
  {
    name: 'clear',
    summary: 'drop the inactive table',
    usage: 'NAME',
    options: {},
    positionals: ONE,
    run: (inv) =>
      withDm((d) => {
        const info = d.clearTable({ name: name0(inv) });
        if (isJson(inv)) inv.out(json(infoView(info)));
      }),
  },
  {
    name: 'suspend',
    summary: 'suspend the device: I/O waits until resume',
    usage: 'NAME [--nolockfs] [--noflush]',
    options: {
      nolockfs: { type: 'boolean', help: 'do not freeze a mounted file system first' },
      noflush: { type: 'boolean', help: 'keep queued I/O queued instead of flushing it' },
    },
    positionals: ONE,
    run: (inv) =>
      withDm(async (d) => {
        const info = await d.suspend(
          { name: name0(inv) },
          { noFlush: flag(inv.values, 'noflush'), skipLockfs: flag(inv.values, 'nolockfs') },
        );
        if (isJson(inv)) inv.out(json(infoView(info)));
      }),
  },
  {
    name: 'resume',
    summary: 'resume the device; an inactive table becomes live',
    usage: 'NAME [--noflush]',
    options: { noflush: { type: 'boolean', help: 'do not flush on the table swap' } },
    positionals: ONE,
    run: (inv) =>
      withDm(async (d) => {
        const info = await d.resume({ name: name0(inv) }, { noFlush: flag(inv.values, 'noflush') });
        if (isJson(inv)) inv.out(json(infoView(info)));
      }),
  },
  {
    name: 'remove',
    summary: 'remove the device',
    usage: 'NAME [-f] [--deferred] [--retry]',
    options: {
      force: { type: 'boolean', short: 'f', help: 'swap in an error table first, so that openers fail instead of hanging' },
      deferred: { type: 'boolean', help: 'if it is open, remove it when its last user closes it' },
      retry: {
        type: 'boolean',
        help: `retry while it is busy for a moment (${DEFAULT_REMOVE_RETRY.attempts} tries): not when a device, a mount or a pending remove holds it`,
      },
    },
    positionals: ONE,
    run: (inv) => removeCommand(inv),
  },
  {
    name: 'remove_all',
    summary: 'remove every device that is not in use',
    usage: '[--deferred]',
    options: { deferred: { type: 'boolean', help: 'devices in use go when their last user closes them' } },
    positionals: NONE,
    run: (inv) =>
      withDm((d) => {
        const before = new Set(sortedNames(d));
        d.removeAll({ deferred: flag(inv.values, 'deferred') });
        const after = new Set(sortedNames(d));
        if (isJson(inv)) inv.out(json({ removed: [...before].filter((n) => !after.has(n)), remaining: [...after] }));
      }),
  },
  {
    name: 'rename',
    summary: 'rename the device, or set its uuid (once, when it has none)',
    usage: 'NAME NEW | NAME --setuuid UUID',
    options: { setuuid: { type: 'string', arg: 'UUID', help: 'set the uuid instead of the name' } },
    positionals: { min: 1, max: 2, missing: 'device name' },
    run: (inv) => {
      const uuidArg = str(inv.values, 'setuuid');
      const nextArg = inv.positionals[1];
      if (uuidArg !== undefined && nextArg !== undefined) throw new UsageError('give NEW or --setuuid UUID, not both');
      if (uuidArg === undefined && nextArg === undefined) throw new UsageError('missing new name');
      const next = checked(deviceName, nextArg);
      const uuid = checked(deviceUuid, uuidArg);
      return withDm(async (d) => {
        const ref = { name: name0(inv) };
        const info = uuid !== undefined ? d.setUuid(ref, uuid) : await d.rename(ref, next!);
        if (isJson(inv)) inv.out(json(infoView(info)));
      });
    },
  },
  {
    name: 'message',
    summary: 'send a message to the target at SECTOR (thin-pool: create_thin ID, delete ID, ...)',
    usage: 'NAME SECTOR MESSAGE...',
    options: {},
    positionals: { min: 3, max: Number.POSITIVE_INFINITY, missing: 'device name, sector or message' },
    run: (inv) => {
      const sector = inv.positionals[1] as string;
      if (!/^\d+$/.test(sector)) throw new UsageError(`sector '${sector}' is not a number`);
      return withDm((d) => {
        const reply = d.message({ name: name0(inv) }, BigInt(sector), inv.positionals.slice(2).join(' '));
        if (isJson(inv)) inv.out(json({ reply }));
        else if (reply !== '') inv.out(`${reply}\n`);
      });
    },
  },
  {
    name: 'wait',
    summary: "wait until the device's event number differs from EVENT_NR (default 0)",
    usage: 'NAME [EVENT_NR]',
    options: {},
    positionals: { min: 1, max: 2, missing: 'device name' },
    run: (inv) => {
      const ev = inv.positionals[1] ?? '0';
      if (!/^\d+$/.test(ev)) throw new UsageError(`event number '${ev}' is not a number`);
      return withDm(async (d) => {
        const info = await d.waitEvent({ name: name0(inv) }, Number(ev));
        if (isJson(inv)) inv.out(json(infoView(info)));
      });
    },
  },
  {
    name: 'setgeometry',
    summary: 'set the geometry the device reports (HDIO_GETGEO)',
    usage: 'NAME CYL HEADS SECTORS START',
    options: {},
    positionals: { min: 5, max: 5, missing: 'NAME CYL HEADS SECTORS START' },
    run: (inv) => {
      const nums = inv.positionals.slice(1);
      const bad = nums.find((n) => !/^\d+$/.test(n));
      if (bad !== undefined) throw new UsageError(`'${bad}' is not a number: setgeometry needs CYL HEADS SECTORS START`);
      const [cylinders, heads, sectors, start] = nums.map(Number) as [number, number, number, number];
      return withDm((d) => {
        d.setGeometry({ name: name0(inv) }, { cylinders, heads, sectors, start });
        if (isJson(inv)) inv.out(json({ name: name0(inv), cylinders, heads, sectors, start }));
      });
    },
  },
  {
    name: 'mknodes',
    summary: 'make /dev/mapper nodes for active devices (and drop stale ones)',
    usage: '[NAME]',
    options: {},
    positionals: OPTIONAL,
    run: (inv) =>
      withDm((d) => {
        d.mknodes(optName0(inv));
        if (isJson(inv)) inv.out(json({ mknodes: inv.positionals[0] ?? null }));
      }),
  },
];

async function removeCommand(inv: Invocation): Promise<void> {
  const name = name0(inv);
  const force = flag(inv.values, 'force');
  const deferred = flag(inv.values, 'deferred');
  await withDm(async (d) => {
    const first = mustInfo(d, { name });
    const started = Date.now();
    let tries = 1;
    try {
      try {
        await d.remove({ name }, { force, deferred });
      } catch (err) {
        // Retrying helps only against a brief opener (udev's probe, a closing program): a device
        // stacked on it or a mount will still be there after the last try.
        if (!flag(inv.values, 'retry') || !(err instanceof DmError) || err.code !== 'EBUSY' || busyReason(d, first).lasting) throw err;
        tries += DEFAULT_REMOVE_RETRY.attempts;
        await d.remove({ name }, { retry: DEFAULT_REMOVE_RETRY, deferred });
      }
    } catch (err) {
      if (!(err instanceof DmError) || err.code !== 'EBUSY') throw err;
      const now = d.info({ name }) ?? first;
      const why = busyReason(d, now);
      const tried =
        tries > 1
          ? `; tried ${tries} times over ${((Date.now() - started) / 1000).toFixed(1)} s`
          : why.lasting && flag(inv.values, 'retry')
            ? '; not retried: waiting cannot free it'
            : '';
      throw new OperationError(`EBUSY: device ${name} is in use: ${why.text}${tried} (${why.hint})`);
    }
    if (isJson(inv))
      inv.out(json({ ...infoView(first), removed: !deferred || first.openCount === 0, deferredRemove: deferred && first.openCount > 0 }));
  });
}
