// `devmapper dm ...`: the device-mapper commands a dmsetup user expects, with dmsetup's output
// formats (dmsetup-format.ts) and --json for scripts.
import { readFileSync } from 'node:fs';
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceRef } from '../dm/names.js';
import { parseTable } from '../dm/targets.js';
import type { DevT } from '../structs/dev.js';
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
} from './dmsetup-format.js';
import { json } from './output.js';
import { noMorePositionals, OperationError, parse, positional, UsageError } from './usage.js';

export const LIBRARY_VERSION = 'devmapper 0.1.0';

export const dmHelp = `devmapper dm <command> [options]   (every command takes --json)
  version                          library and driver versions
  targets                          loaded target types and versions
  target-version TYPE...           versions of the given target types
  ls [--target T] [--tree]         devices: name (major:minor)
  info [NAME] [-c]                 device state; every device when NAME is omitted
  table [NAME] [--target T] [--inactive]
  status [NAME] [--target T] [--noflush]
  deps [NAME] [-o devname]
  create NAME [--table LINE]... [--table-file F|-] [--uuid U] [--readonly] [--notable]
  load NAME (--table LINE... | --table-file F|-) [--readonly]   (alias: reload)
  clear NAME                       drop the inactive table
  suspend NAME [--nolockfs] [--noflush]
  resume NAME [--noflush]
  remove NAME [--force] [--deferred] [--retry]
  remove_all [--deferred]
  rename NAME NEW | rename NAME --setuuid UUID
  message NAME SECTOR MESSAGE...
  wait NAME [EVENT_NR]             wait until the device's event number differs
  setgeometry NAME CYL HEADS SECTORS START
  mknodes [NAME]                   create /dev/mapper nodes for active devices`;

type Out = (text: string) => void;

/** A device argument: a name, or `-u UUID` / `-j MAJ -m MIN` given as options. */
function refFrom(name: string | undefined, uuid: string | undefined): DeviceRef {
  if (uuid !== undefined) return { uuid };
  if (name === undefined) throw new UsageError('missing device name');
  return { name };
}

function readAheadSectors(dev: DevT): number | undefined {
  try {
    return Number(readFileSync(`/sys/dev/block/${dev.major}:${dev.minor}/bdi/read_ahead_kb`, 'utf8').trim()) * 2;
  } catch {
    return undefined;
  }
}

function tableFrom(values: { table?: string[]; 'table-file'?: string }): ReturnType<typeof parseTable> | undefined {
  const lines: string[] = [...(values.table ?? [])];
  const file = values['table-file'];
  if (file !== undefined) lines.push(readFileSync(file === '-' ? 0 : file, 'utf8'));
  if (lines.length === 0) return undefined;
  try {
    return parseTable(lines.join('\n'));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}


/** The CLI entry (src/cli/main.ts): output to stdout. */
export function run(argv: string[]): Promise<number> {
  return dmMain(argv, (text) => process.stdout.write(text));
}

export async function dmMain(argv: string[], out: Out): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    out(`${dmHelp}\n`);
    return command === undefined ? 2 : 0;
  }
  const common = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;
  const dm = () => DeviceMapper.open();

  switch (command) {
    case 'version': {
      const { values, positionals } = parse(rest, common);
      noMorePositionals(positionals, 0);
      const d = dm();
      try {
        const driver = d.version();
        out(values.json ? json({ library: LIBRARY_VERSION, driver: driver.join('.') }) : formatVersion(LIBRARY_VERSION, driver));
      } finally {
        d.close();
      }
      return 0;
    }
    case 'targets':
    case 'target-version': {
      const { values, positionals } = parse(rest, common);
      const d = dm();
      try {
        let list: { name: string; version: readonly number[] }[];
        if (command === 'targets') {
          noMorePositionals(positionals, 0);
          list = d.listVersions();
        } else {
          if (positionals.length === 0) throw new UsageError('missing target type');
          list = positionals.map((type) => {
            const version = d.targetVersion(type);
            if (!version) throw new UsageError(`target type ${type} is not loaded`);
            return { name: type, version };
          });
        }
        out(values.json ? json(list) : formatTargets(list));
      } finally {
        d.close();
      }
      return 0;
    }
    case 'ls': {
      const { values, positionals } = parse(rest, { ...common, target: { type: 'string' }, tree: { type: 'boolean' } });
      noMorePositionals(positionals, 0);
      const d = dm();
      try {
        let list = d.list();
        if (values.target !== undefined) {
          const type = values.target;
          list = list.filter((e) => d.status({ name: e.name }).some((t) => t.type === type));
        }
        if (values.json) out(json(list));
        else if (values.tree) out(formatTree(list, (dev) => d.deps({ dev }), localeIsUtf8()));
        else out(formatLs(list, values.target !== undefined));
      } finally {
        d.close();
      }
      return 0;
    }
    case 'info': {
      const { values, positionals } = parse(rest, { ...common, columns: { type: 'boolean', short: 'c' }, uuid: { type: 'string', short: 'u' } });
      noMorePositionals(positionals, 1);
      const d = dm();
      try {
        const refs: DeviceRef[] =
          positionals[0] !== undefined || values.uuid !== undefined
            ? [refFrom(positionals[0], values.uuid)]
            : d.list().map((e) => ({ name: e.name }));
        const infos: InfoView[] = [];
        for (const ref of refs) {
          const i = d.info(ref);
          if (i === null) {
            if (refs.length === 1) throw new OperationError('Device does not exist.');
            continue;
          }
          infos.push({ ...i, readAheadSectors: readAheadSectors(i.dev) });
        }
        if (values.json) out(json(infos));
        else if (values.columns) out(formatInfoColumns(infos));
        else out(infos.map(formatInfo).join(''));
      } finally {
        d.close();
      }
      return 0;
    }
    case 'table':
    case 'status': {
      const { values, positionals } = parse(rest, {
        ...common,
        target: { type: 'string' },
        inactive: { type: 'boolean' },
        noflush: { type: 'boolean' },
      });
      noMorePositionals(positionals, 1);
      const d = dm();
      try {
        const one = positionals[0];
        const names = one !== undefined ? [one] : d.list().map((e) => e.name).sort();
        const result: { name: string; targets: { startSector: bigint; lengthSectors: bigint; type: string; params: string }[] }[] = [];
        for (const name of names) {
          if (one !== undefined && d.info({ name }) === null) throw new OperationError('Device does not exist.');
          const lines =
            command === 'table'
              ? d.tableLines({ name }, { inactive: values.inactive ?? false })
              : d.status({ name }, { noFlush: values.noflush ?? false, inactive: values.inactive ?? false });
          const kept = values.target === undefined ? lines : lines.filter((l) => l.type === values.target);
          if (kept.length > 0 || values.target === undefined) result.push({ name, targets: kept });
        }
        if (values.json) out(json(result));
        else {
          const prefix = one === undefined;
          out(result.map((r) => formatTargetLines(r.targets, prefix ? `${r.name}: ` : '')).join(''));
        }
      } finally {
        d.close();
      }
      return 0;
    }
    case 'deps': {
      const { values, positionals } = parse(rest, { ...common, output: { type: 'string', short: 'o' } });
      noMorePositionals(positionals, 1);
      if (values.output !== undefined && values.output !== 'devname' && values.output !== 'devno') {
        throw new UsageError(`-o ${values.output}: expected devname or devno`);
      }
      const d = dm();
      try {
        const one = positionals[0];
        const names = one !== undefined ? [one] : d.list().map((e) => e.name).sort();
        const all = names.map((name) => ({ name, deps: d.deps({ name }) }));
        // dmsetup names a dm dependency by its dm name, any other by its kernel name (loop2).
        const dmNames = new Map(d.list().map((e) => [`${e.dev.major}:${e.dev.minor}`, e.name]));
        const devName = (dev: DevT): string | undefined => dmNames.get(`${dev.major}:${dev.minor}`) ?? blockDeviceName(dev);
        if (values.json) out(json(all));
        else
          for (const { name, deps } of all) {
            const devNames = values.output === 'devname' ? deps.map(devName) : undefined;
            out((one === undefined ? `${name}: ` : '') + formatDeps(deps, devNames));
          }
      } finally {
        d.close();
      }
      return 0;
    }
    case 'create':
    case 'load':
    case 'reload': {
      const { values, positionals } = parse(rest, {
        ...common,
        table: { type: 'string', multiple: true },
        'table-file': { type: 'string' },
        uuid: { type: 'string', short: 'u' },
        readonly: { type: 'boolean', short: 'r' },
        notable: { type: 'boolean' },
      });
      const name = positional(positionals, 0, 'device name');
      noMorePositionals(positionals, 1);
      const table = tableFrom(values);
      if (command !== 'create' && table === undefined) throw new UsageError(`${command} needs --table or --table-file`);
      if (command === 'create' && table === undefined && !values.notable) {
        throw new UsageError('create needs --table, --table-file or --notable');
      }
      const d = dm();
      try {
        if (command === 'create') {
          const info = await d.create(name, {
            ...(values.uuid !== undefined ? { uuid: values.uuid } : {}),
            readOnly: values.readonly ?? false,
            ...(table !== undefined ? { table } : {}),
          });
          if (values.json) out(json(info));
        } else {
          d.loadTable({ name }, table ?? [], { readOnly: values.readonly ?? false });
        }
      } finally {
        d.close();
      }
      return 0;
    }
    case 'clear':
    case 'suspend':
    case 'resume':
    case 'remove': {
      const { values, positionals } = parse(rest, {
        ...common,
        nolockfs: { type: 'boolean' },
        noflush: { type: 'boolean' },
        force: { type: 'boolean', short: 'f' },
        deferred: { type: 'boolean' },
        retry: { type: 'boolean' },
      });
      const name = positional(positionals, 0, 'device name');
      noMorePositionals(positionals, 1);
      const d = dm();
      try {
        const ref = { name };
        if (command === 'clear') d.clearTable(ref);
        else if (command === 'suspend') await d.suspend(ref, { noFlush: values.noflush ?? false, skipLockfs: values.nolockfs ?? false });
        else if (command === 'resume') await d.resume(ref, { noFlush: values.noflush ?? false });
        else await d.remove(ref, { force: values.force ?? false, deferred: values.deferred ?? false, retry: values.retry ?? false });
      } finally {
        d.close();
      }
      return 0;
    }
    case 'remove_all': {
      const { values, positionals } = parse(rest, { ...common, deferred: { type: 'boolean' } });
      noMorePositionals(positionals, 0);
      const d = dm();
      try {
        d.removeAll({ deferred: values.deferred ?? false });
      } finally {
        d.close();
      }
      return 0;
    }
    case 'rename': {
      const { values, positionals } = parse(rest, { ...common, setuuid: { type: 'string' } });
      const name = positional(positionals, 0, 'device name');
      const d = dm();
      try {
        if (values.setuuid !== undefined) {
          noMorePositionals(positionals, 1);
          await d.setUuid({ name }, values.setuuid);
        } else {
          const next = positional(positionals, 1, 'new name');
          noMorePositionals(positionals, 2);
          await d.rename({ name }, next);
        }
      } finally {
        d.close();
      }
      return 0;
    }
    case 'message': {
      const { values, positionals } = parse(rest, common);
      const name = positional(positionals, 0, 'device name');
      const sectorText = positional(positionals, 1, 'sector');
      if (!/^\d+$/.test(sectorText)) throw new UsageError(`sector '${sectorText}' is not a number`);
      const message = positionals.slice(2).join(' ');
      if (message === '') throw new UsageError('missing message');
      const d = dm();
      try {
        const reply = d.message({ name }, BigInt(sectorText), message);
        if (values.json) out(json({ reply }));
        else if (reply !== '') out(`${reply}\n`);
      } finally {
        d.close();
      }
      return 0;
    }
    case 'wait': {
      const { values, positionals } = parse(rest, common);
      const name = positional(positionals, 0, 'device name');
      noMorePositionals(positionals, 2);
      const ev = positionals[1] ?? '0';
      if (!/^\d+$/.test(ev)) throw new UsageError(`event number '${ev}' is not a number`);
      const d = dm();
      try {
        const info = await d.waitEvent({ name }, Number(ev));
        if (values.json) out(json(info));
      } finally {
        d.close();
      }
      return 0;
    }
    case 'setgeometry': {
      const { positionals } = parse(rest, common);
      const name = positional(positionals, 0, 'device name');
      const nums = positionals.slice(1);
      if (nums.length !== 4 || !nums.every((n) => /^\d+$/.test(n))) {
        throw new UsageError('setgeometry needs CYLINDERS HEADS SECTORS START');
      }
      const [cylinders, heads, sectors, start] = nums.map(Number) as [number, number, number, number];
      const d = dm();
      try {
        d.setGeometry({ name }, { cylinders, heads, sectors, start });
      } finally {
        d.close();
      }
      return 0;
    }
    case 'mknodes': {
      const { positionals } = parse(rest, common);
      noMorePositionals(positionals, 1);
      const d = dm();
      try {
        d.mknodes(positionals[0]);
      } finally {
        d.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown dm command '${command}' (devmapper dm --help)`);
  }
}



/** A block device's kernel name (loop2, dm-4) from sysfs, for `deps -o devname`. */
function blockDeviceName(dev: DevT): string | undefined {
  try {
    const uevent = readFileSync(`/sys/dev/block/${dev.major}:${dev.minor}/uevent`, 'utf8');
    return /^DEVNAME=(.*)$/m.exec(uevent)?.[1];
  } catch {
    return undefined;
  }
}
