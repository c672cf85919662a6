// `devmapper dm ...`: the device-mapper commands a dmsetup user expects, with dmsetup's output
// formats (dmsetup-format.ts) and --json for scripts. One record per command (command.ts).
import { formatDev, type DevT } from '../structs/dev.js';
import { flag, JSON_OPTION, runGroup, str, type Command, type Group } from './command.js';
import { changeCommands } from './dm-change.js';
import { blockDeviceName, depsOf, infoView, isJson, mustInfo, NONE, OPTIONAL, optName0, refOf, sortedNames, withDm } from './dm-support.js';
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
import { json } from './output.js';
import { OperationError, UsageError } from './usage.js';
import { VERSION } from './version.js';

export const LIBRARY_VERSION = `devmapper ${VERSION}`;

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
          const byDev = new Map(entries.map((e) => [formatDev(e.dev), e.name]));
          const refOfDev = (dev: DevT) => {
            const name = byDev.get(formatDev(dev));
            return name === undefined ? { dev } : { name };
          };
          inv.out(formatTree(entries, (dev) => depsOf(d, refOfDev(dev)), localeIsUtf8()));
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
    options: {
      output: { type: 'string', short: 'o', arg: 'devno|devname', help: 'name dependencies by major, minor (default) or by name' },
    },
    positionals: OPTIONAL,
    run: (inv) => {
      const output = str(inv.values, 'output') ?? 'devno';
      if (output !== 'devname' && output !== 'devno') throw new UsageError(`-o ${output}: expected devno or devname`);
      return withDm((d) => {
        const one = optName0(inv);
        if (one !== undefined) mustInfo(d, { name: one });
        const all = (one !== undefined ? [one] : sortedNames(d)).map((name) => ({ name, deps: depsOf(d, { name }) }));
        if (isJson(inv)) return inv.out(json(all));
        // dmsetup names a dm dependency by its dm name, any other by its kernel name (loop2).
        const dmNames = new Map(d.list().map((e) => [formatDev(e.dev), e.name]));
        const devName = (dev: DevT): string | undefined => dmNames.get(formatDev(dev)) ?? blockDeviceName(dev);
        for (const { name, deps } of all) {
          const names = output === 'devname' ? deps.map(devName) : undefined;
          inv.out((one === undefined ? `${name}: ` : '') + formatDeps(deps, names));
        }
      });
    },
  },
  ...changeCommands,
];

function tableOrStatus(which: 'table' | 'status', summary: string, extra: Command['options']): Command {
  return {
    name: which,
    summary: `${summary}; every device when NAME is omitted`,
    usage: `[NAME] [--target TYPE] ${Object.keys(extra)
      .map((k) => `[--${k}]`)
      .join(' ')}`,
    options: { target: { type: 'string', arg: 'TYPE', help: 'only targets of this type' }, ...extra },
    positionals: OPTIONAL,
    run: (inv) =>
      withDm((d) => {
        const one = optName0(inv);
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

export const group: Group = {
  name: 'dm',
  summary: 'device-mapper commands, as dmsetup (same output formats); --json for scripts',
  common: { json: JSON_OPTION },
  commands,
  details: "Table lines use dmsetup's syntax; a device may be given as major:minor or a path.",
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
