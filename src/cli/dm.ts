// `devmapper dm ...`: the device-mapper commands a dmsetup user expects, with dmsetup's output
// formats (dmsetup-format.ts) and --json for scripts. One record per command (command.ts).
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { deviceName, deviceUuid, type DeviceRef } from '../dm/names.js';
import { DEFAULT_REMOVE_RETRY } from '../dm/commands/remove.js';
import { DmError } from '../ioctl/errors.js';
import type { DevT } from '../structs/dev.js';
import { flag, JSON_OPTION, runGroup, str, type Command, type Group, type Invocation } from './command.js';
import { blockDeviceName, busyReason, createHint, depsOf, infoView, tableFrom } from './dm-support.js';
import {
  formatDeps,
  formatInfo,
  formatInfoColumns,
  formatLs,
  formatTargetLines,
  formatTargets,
  formatTree,
  formatVersion,
  localeIsUtf8,
  type InfoView,
  type TargetLineView,
} from './dmsetup-format.js';
import { explain } from './errors.js';
import { json } from './output.js';
import { OperationError, UsageError } from './usage.js';
import { VERSION } from './version.js';

export const LIBRARY_VERSION = `devmapper ${VERSION}`;

/** Opens the control node for one command and closes it whatever happens. */
export async function withDm<T>(fn: (d: DeviceMapper) => T | Promise<T>): Promise<T> {
  const d = DeviceMapper.open();
  try {
    return await fn(d);
  } catch (err) {
    throw explain(err);
  } finally {
    d.close();
  }
}

const isJson = (inv: Invocation): boolean => flag(inv.values, 'json');
const name0 = (inv: Invocation): string => inv.positionals[0] as string;

/** A device named by NAME or `-u UUID`. */
function refOf(inv: Invocation): DeviceRef {
  const uuid = str(inv.values, 'uuid');
  const name = inv.positionals[0];
  if (uuid !== undefined && name !== undefined) throw new UsageError('give NAME or -u UUID, not both');
  if (uuid !== undefined) return { uuid };
  if (name === undefined) throw new UsageError('missing device name');
  return { name };
}

function mustInfo(d: DeviceMapper, ref: DeviceRef): DeviceInfo {
  const i = d.info(ref);
  const label = 'name' in ref ? ref.name : 'uuid' in ref ? `with uuid ${ref.uuid}` : '';
  if (i === null) throw new OperationError(`ENXIO: device ${label} does not exist (see 'devmapper dm ls')`);
  return i;
}

/** Checks a name or uuid the kernel would refuse, before anything is opened: a usage error. */
function checked<T>(check: (s: string) => T, value: string | undefined): void {
  if (value === undefined) return;
  try {
    check(value);
  } catch (err) {
    throw explain(err);
  }
}

const sortedNames = (d: DeviceMapper): string[] => d.list().map((e) => e.name).sort();

const ONE: Command['positionals'] = { min: 1, max: 1, missing: 'device name' };
const NONE: Command['positionals'] = { min: 0, max: 0 };
const OPTIONAL: Command['positionals'] = { min: 0, max: 1 };

const commands: Command[] = [
  {
    name: 'version',
    summary: 'library and driver versions',
    usage: '',
    options: {},
    positionals: NONE,
    run: (inv) =>
      withDm((d) => {
        const driver = d.version();
        inv.out(isJson(inv) ? json({ library: LIBRARY_VERSION, driver: driver.join('.') }) : formatVersion(LIBRARY_VERSION, driver));
      }),
  },
  {
    name: 'targets',
    summary: 'loaded target types and their versions',
    usage: '',
    options: {},
    positionals: NONE,
    run: (inv) =>
      withDm((d) => {
        const targets = d.listVersions();
        inv.out(isJson(inv) ? json(targets) : formatTargets(targets));
      }),
  },
  {
    name: 'target-version',
    summary: 'versions of the given target types',
    usage: 'TYPE...',
    options: {},
    positionals: { min: 1, max: Number.POSITIVE_INFINITY, missing: 'target type' },
    run: (inv) =>
      withDm((d) => {
        const found = inv.positionals.map((type) => {
          const version = d.targetVersion(type);
          if (!version) throw new OperationError(`ENOENT: the kernel has no target type '${type}' loaded (see 'devmapper dm targets')`);
          return { name: type, version };
        });
        inv.out(isJson(inv) ? json(found) : formatTargets(found));
      }),
  },
  {
    name: 'ls',
    summary: 'devices: name (major:minor)',
    usage: '[--target TYPE] [--tree]',
    options: {
      target: { type: 'string', arg: 'TYPE', help: 'only devices with a target of this type' },
      tree: { type: 'boolean', help: 'what each device stands on, as a tree' },
    },
    positionals: NONE,
    run: (inv) =>
      withDm((d) => {
        const type = str(inv.values, 'target');
        let entries = d.list();
        if (type !== undefined) entries = entries.filter((e) => d.status({ name: e.name }).some((t) => t.type === type));
        if (isJson(inv)) inv.out(json(entries));
        else if (flag(inv.values, 'tree')) {
          const byDev = new Map(entries.map((e) => [`${e.dev.major}:${e.dev.minor}`, e.name]));
          inv.out(formatTree(entries, (dev) => depsOf(d, { name: byDev.get(`${dev.major}:${dev.minor}`) ?? '' }), localeIsUtf8()));
        } else inv.out(formatLs(entries, type !== undefined));
      }),
  },
  {
    name: 'info',
    summary: 'device state; every device when NAME is omitted',
    usage: '[NAME | -u UUID] [-c]',
    options: {
      columns: { type: 'boolean', short: 'c', help: "one line per device (dmsetup info -c's columns)" },
      uuid: { type: 'string', short: 'u', arg: 'UUID', help: 'the device with this uuid' },
    },
    positionals: OPTIONAL,
    run: (inv) => {
      const one = inv.positionals[0] !== undefined || str(inv.values, 'uuid') !== undefined ? refOf(inv) : undefined;
      return withDm((d) => {
        const infos: InfoView[] = one
          ? [infoView(mustInfo(d, one))]
          : d.list().flatMap((e) => {
              const i = d.info({ name: e.name });
              return i === null ? [] : [infoView(i)];
            });
        if (isJson(inv)) inv.out(json(infos));
        else if (flag(inv.values, 'columns')) inv.out(formatInfoColumns(infos));
        else inv.out(infos.map(formatInfo).join(''));
      });
    },
  },
  tableOrStatus('table', 'the table: start length type params', {
    inactive: { type: 'boolean', help: 'the inactive table (loaded, not yet resumed)' },
  }),
  tableOrStatus('status', "each target's status line", {
    inactive: { type: 'boolean', help: "the inactive table's targets" },
    noflush: { type: 'boolean', help: 'do not let targets flush for the status (thin-pool commits otherwise)' },
  }),
  {
    name: 'deps',
    summary: 'the devices the live table uses; every device when NAME is omitted',
    usage: '[NAME] [-o devno|devname]',
    options: { output: { type: 'string', short: 'o', arg: 'devno|devname', help: 'name dependencies by major, minor (default) or by name' } },
    positionals: OPTIONAL,
    run: (inv) => {
      const output = str(inv.values, 'output') ?? 'devno';
      if (output !== 'devname' && output !== 'devno') throw new UsageError(`-o ${output}: expected devno or devname`);
      return withDm((d) => {
        const one = inv.positionals[0];
        if (one !== undefined) mustInfo(d, { name: one });
        const all = (one !== undefined ? [one] : sortedNames(d)).map((name) => ({ name, deps: depsOf(d, { name }) }));
        if (isJson(inv)) return inv.out(json(all));
        // dmsetup names a dm dependency by its dm name, any other by its kernel name (loop2).
        const dmNames = new Map(d.list().map((e) => [`${e.dev.major}:${e.dev.minor}`, e.name]));
        const devName = (dev: DevT): string | undefined => dmNames.get(`${dev.major}:${dev.minor}`) ?? blockDeviceName(dev);
        for (const { name, deps } of all) {
          const names = output === 'devname' ? deps.map(devName) : undefined;
          inv.out((one === undefined ? `${name}: ` : '') + formatDeps(deps, names));
        }
      });
    },
  },
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
      const uuid = str(inv.values, 'uuid');
      checked(deviceName, name);
      checked(deviceUuid, uuid);
      return withDm(async (d) => {
        try {
          const info = await d.create(name, { ...(uuid !== undefined ? { uuid } : {}), readOnly: flag(inv.values, 'readonly'), ...(table ? { table } : {}) });
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
        const info = await d.suspend({ name: name0(inv) }, { noFlush: flag(inv.values, 'noflush'), skipLockfs: flag(inv.values, 'nolockfs') });
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
      const uuid = str(inv.values, 'setuuid');
      const next = inv.positionals[1];
      if (uuid !== undefined && next !== undefined) throw new UsageError('give NEW or --setuuid UUID, not both');
      if (uuid === undefined && next === undefined) throw new UsageError('missing new name');
      checked(deviceName, next);
      checked(deviceUuid, uuid);
      return withDm(async (d) => {
        const ref = { name: name0(inv) };
        const info = uuid !== undefined ? d.setUuid(ref, uuid) : await d.rename(ref, next as string);
        if (isJson(inv)) inv.out(json(infoView(info)));
      });
    },
  },
  {
    name: 'message',
    summary: "send a message to the target at SECTOR (thin-pool: create_thin ID, delete ID, ...)",
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
        d.mknodes(inv.positionals[0]);
        if (isJson(inv)) inv.out(json({ mknodes: inv.positionals[0] ?? null }));
      }),
  },
];

function tableOrStatus(which: 'table' | 'status', summary: string, extra: Command['options']): Command {
  return {
    name: which,
    summary: `${summary}; every device when NAME is omitted`,
    usage: `[NAME] [--target TYPE] ${Object.keys(extra).map((k) => `[--${k}]`).join(' ')}`,
    options: { target: { type: 'string', arg: 'TYPE', help: 'only targets of this type' }, ...extra },
    positionals: OPTIONAL,
    run: (inv) =>
      withDm((d) => {
        const one = inv.positionals[0];
        if (one !== undefined) mustInfo(d, { name: one });
        const type = str(inv.values, 'target');
        const inactive = flag(inv.values, 'inactive');
        const result: { name: string; targets: TargetLineView[] }[] = [];
        for (const name of one !== undefined ? [one] : sortedNames(d)) {
          const lines =
            which === 'table'
              ? d.tableLines({ name }, { inactive })
              : d.status({ name }, { noFlush: flag(inv.values, 'noflush'), inactive });
          const kept = type === undefined ? lines : lines.filter((l) => l.type === type);
          // A device without the table asked for is listed (an empty line, as dmsetup) unless a type was asked.
          if (kept.length > 0 || type === undefined) result.push({ name, targets: kept });
        }
        if (isJson(inv)) return inv.out(json(result));
        const prefix = (name: string): string => (one === undefined ? `${name}: ` : '');
        inv.out(result.map((r) => (r.targets.length > 0 ? formatTargetLines(r.targets, prefix(r.name)) : `${prefix(r.name)}\n`)).join(''));
      }),
  };
}

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
      const tried = tries > 1 ? `; tried ${tries} times over ${((Date.now() - started) / 1000).toFixed(1)} s` : why.lasting && flag(inv.values, 'retry') ? '; not retried: waiting cannot free it' : '';
      throw new OperationError(`EBUSY: device ${name} is in use: ${why.text}${tried} (${why.hint})`);
    }
    if (isJson(inv)) inv.out(json({ ...infoView(first), removed: !deferred || first.openCount === 0, deferredRemove: deferred && first.openCount > 0 }));
  });
}

export const group: Group = {
  name: 'dm',
  summary: "device-mapper commands, as dmsetup (same output formats); --json for scripts",
  common: { json: JSON_OPTION },
  commands,
  details: 'Table lines use dmsetup\'s syntax; a device may be given as major:minor or a path.',
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
