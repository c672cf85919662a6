// `devmapper layer ...`: the pool's thin devices by id (the DeviceSet's hashes): snapshots of the
// base device or of each other, mounted and unmounted across separate processes. Whether a layer
// is mounted is read from the kernel's mount table, never from a process's memory: a later
// `layer umount` finds the mount an earlier `layer mount` made.
import { mkdirSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceSet } from '../thin/device-set.js';
import { InvalidHashError, UnknownDeviceError } from '../thin/errors.js';
import { BASE_HASH, validateHash } from '../thin/metadata-store.js';
import { mountTable } from '../thin/mount.js';
import { SECTOR_BYTES } from '../thin/pool-setup.js';
import {
  DEFAULT_HOME,
  explain,
  formatBytes,
  formatColumns,
  homeOptions,
  OperationError,
  percent,
  resolveHome,
  withPool,
} from './pool.js';
import { json } from './output.js';
import { noMorePositionals, parse, positional, UsageError } from './usage.js';

export const layerHelp = `devmapper layer <command> [--home DIR] [--storage-opt dm.key=value]... [--json]
  create ID [--parent P]   a new layer: a snapshot of P, or of the base device (empty file system)
  rm ID                    delete the layer (discarding its blocks); it must not be mounted
  mount ID [PATH]          mount the layer (default PATH: DIR/mnt/ID); prints the mount path
  umount ID                unmount it wherever it is mounted, and deactivate its device
  ls                       every layer: id, thin id, size, mapped, active, mounted
  status ID                one layer: thin id, device, size, mapped sectors, mount points

  --home DIR               the pool's folder (default ${DEFAULT_HOME}); see 'devmapper pool --help'`;

function layerId(text: string): string {
  try {
    return validateHash(text);
  } catch (e) {
    if (e instanceof InvalidHashError) throw new UsageError(`layer id: ${e.message.replace(/^invalid device hash /, '')}`);
    throw e;
  }
}

export interface LayerRow {
  id: string;
  thinId: number;
  sizeBytes: number;
  mappedBytes: bigint;
  mappedSectors: bigint;
  highestMappedSector: bigint | null;
  transactionId: bigint;
  dmName: string;
  device: string | null;
  active: boolean;
  mounted: string[];
}

async function layerRow(set: DeviceSet, dm: DeviceMapper, id: string, table = mountTable()): Promise<LayerRow> {
  const dmName = set.naming.deviceName(id);
  const active = dm.info({ name: dmName }) !== null;
  const st = await set.getDeviceStatus(id); // activates for the query only if it was inactive
  return {
    id,
    thinId: st.deviceId,
    sizeBytes: st.sizeBytes,
    mappedBytes: st.mappedSectors * BigInt(SECTOR_BYTES),
    mappedSectors: st.mappedSectors,
    highestMappedSector: st.highestMappedSector,
    transactionId: st.transactionId,
    dmName,
    device: active ? set.devicePath(id) : null,
    active,
    mounted: active ? set.mountPoints(id, table) : [],
  };
}

export function formatLayerRows(rows: readonly LayerRow[]): string {
  return formatColumns(
    [
      ['ID', 'THIN ID', 'SIZE', 'MAPPED', 'ACTIVE', 'MOUNTED'],
      ...rows.map((r) => [
        r.id,
        `${r.thinId}`,
        formatBytes(BigInt(r.sizeBytes)),
        formatBytes(r.mappedBytes),
        r.active ? 'yes' : 'no',
        r.mounted.length > 0 ? r.mounted.join(',') : '-',
      ]),
    ],
    [1, 2, 3],
  );
}

export function formatLayerStatus(r: LayerRow): string {
  const size = BigInt(r.sizeBytes);
  return formatColumns([
    ['id', r.id],
    ['thin id', `${r.thinId}`],
    ['dm name', r.dmName],
    ['device', r.device ?? '(inactive)'],
    ['size', `${formatBytes(size)} (${size / BigInt(SECTOR_BYTES)} sectors)`],
    ['mapped', `${formatBytes(r.mappedBytes)} (${r.mappedSectors} sectors, ${percent(r.mappedBytes, size)})`],
    ['highest mapped', r.highestMappedSector === null ? '-' : `sector ${r.highestMappedSector}`],
    ['transaction id', `${r.transactionId}`],
    ['mounted on', r.mounted.length > 0 ? r.mounted.join(', ') : '-'],
  ]);
}

export async function run(argv: string[]): Promise<number> {
  const out = (t: string): boolean => process.stdout.write(t);
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    out(`${layerHelp}\n`);
    return command === undefined ? 2 : 0;
  }
  const hints = {
    UnknownDeviceError: "see 'devmapper layer ls'",
    DeviceBusyError: "unmount it first ('devmapper layer umount ID')",
  };
  try {
    switch (command) {
      case 'create': {
        const { values, positionals } = parse(rest, { ...homeOptions, parent: { type: 'string', short: 'p' } });
        if (values.help) return help(out);
        const id = layerId(positional(positionals, 0, 'layer id'));
        noMorePositionals(positionals, 1);
        const parent = values.parent === undefined ? BASE_HASH : layerId(values.parent);
        await withPool(values, ({ set }) => set.addDevice(id, parent));
        if (values.json) out(json({ id, parent: parent === BASE_HASH ? null : parent }));
        return 0;
      }
      case 'rm': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        const id = layerId(positional(positionals, 0, 'layer id'));
        noMorePositionals(positionals, 1);
        await withPool(values, async ({ home, set }) => {
          await set.deleteDevice(id);
          try {
            rmdirSync(join(home, 'mnt', id)); // the default mount point, if made and empty
          } catch {
            // none, or not empty: leave it
          }
        });
        return 0;
      }
      case 'mount': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        const id = layerId(positional(positionals, 0, 'layer id'));
        noMorePositionals(positionals, 2);
        const { home } = resolveHome(values);
        const path = resolve(positionals[1] ?? join(home, 'mnt', id));
        await withPool(values, async ({ set }) => {
          if (!set.hasDevice(id)) throw new UnknownDeviceError(id);
          mkdirSync(path, { recursive: true, mode: 0o755 });
          // Already mounted there by an earlier process: adopted; elsewhere: DeviceBusyError.
          await set.mountDevice(id, path);
        });
        out(values.json ? json({ id, path }) : `${path}\n`);
        return 0;
      }
      case 'umount':
      case 'unmount': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        const id = layerId(positional(positionals, 0, 'layer id'));
        noMorePositionals(positionals, 1);
        const paths = await withPool(values, async ({ set }) => {
          const now = set.mountPoints(id);
          await set.unmountDevice(id); // wherever the kernel has it mounted; then deactivates
          return now;
        });
        if (values.json) out(json({ id, unmounted: paths }));
        return 0;
      }
      case 'ls': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        noMorePositionals(positionals, 0);
        const rows = await withPool(values, async ({ set, dm }) => {
          const table = mountTable();
          const list: LayerRow[] = [];
          for (const id of set.list().sort()) list.push(await layerRow(set, dm, id, table));
          return list;
        });
        if (values.json) out(json(rows));
        else out(formatLayerRows(rows));
        return 0;
      }
      case 'status': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        const id = layerId(positional(positionals, 0, 'layer id'));
        noMorePositionals(positionals, 1);
        const row = await withPool(values, ({ set, dm }) => layerRow(set, dm, id));
        out(values.json ? json(row) : formatLayerStatus(row));
        return 0;
      }
      default:
        throw new UsageError(`unknown layer command '${command}' (devmapper layer --help)`);
    }
  } catch (e) {
    throw explain(e, hints);
  }
}

function help(out: (t: string) => void): number {
  out(`${layerHelp}\n`);
  return 0;
}
