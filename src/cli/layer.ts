// `devmapper layer ...`: the pool's thin devices by id (the DeviceSet's hashes): snapshots of the
// base device or of each other, mounted and unmounted across separate processes. Whether a layer
// is mounted is read from the kernel's mount table, never from a process's memory: a later
// `layer umount` finds the mount an earlier `layer mount` made.
import { rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceSet } from '../thin/device-set.js';
import { InvalidHashError, UnknownDeviceError } from '../thin/errors.js';
import { BASE_HASH, validateHash } from '../thin/metadata-store.js';
import { mountTable } from '../thin/mount.js';
import { sectorsToBytes } from '../structs/units.js';
import { flag, runGroup, str, type Command, type Group, type Invocation } from './command.js';
import { json } from './output.js';
import { formatLayerRows, formatLayerStatus, type LayerRow } from './pool-format.js';
import { homeOptions, resolveHome, withPool } from './pool-home.js';
import { homeArgs, MOUNT_IN_USE, POOL_HINTS, poolStep } from './pool.js';
import { UsageError } from './usage.js';

export { formatLayerRows, formatLayerStatus, type LayerRow } from './pool-format.js';

const HINTS: Readonly<Record<string, string>> = {
  ...POOL_HINTS,
  UnknownDeviceError: "see 'devmapper layer ls'",
  DeviceBusyError: "unmount it first ('devmapper layer umount ID')",
  NotMountedError: "see 'devmapper layer ls'",
};

const UMOUNT_HINTS: Readonly<Record<string, string>> = { ...HINTS, DeviceBusyError: MOUNT_IN_USE, EBUSY: MOUNT_IN_USE };

function layerId(text: string): string {
  try {
    return validateHash(text);
  } catch (e) {
    if (e instanceof InvalidHashError) throw new UsageError(`layer id: ${e.message.replace(/^invalid device hash /, '')}`);
    throw e;
  }
}

/** Data bytes each layer maps alone, by hash, from one read of the pool's metadata. */
async function exclusiveBytes(set: DeviceSet): Promise<Map<string, bigint>> {
  const block = set.status().sectorSizeBytes;
  const out = new Map<string, bigint>();
  for (const t of await set.thins()) if (t.hash !== null) out.set(t.hash, BigInt(t.exclusiveBlocks) * block);
  return out;
}

async function layerRow(
  set: DeviceSet,
  dm: DeviceMapper,
  id: string,
  exclusive: Map<string, bigint>,
  table = mountTable(),
): Promise<LayerRow> {
  const dmName = set.naming.deviceName(id);
  const active = dm.info({ name: dmName }) !== null;
  const st = await set.getDeviceStatus(id); // activates for the query only if it was inactive
  return {
    id,
    thinId: st.deviceId,
    sizeBytes: st.sizeBytes,
    mappedBytes: sectorsToBytes(st.mappedSectors),
    exclusiveBytes: exclusive.get(id) ?? 0n,
    mappedSectors: st.mappedSectors,
    highestMappedSector: st.highestMappedSector,
    transactionId: st.transactionId,
    dmName,
    device: active ? set.devicePath(id) : null,
    active,
    mounted: active ? set.mountPoints(id, table) : [],
  };
}

const isJson = (inv: Invocation): boolean => flag(inv.values, 'json');
const ID: Command['positionals'] = { min: 1, max: 1, missing: 'layer id' };

const commands: Command[] = [
  {
    name: 'create',
    summary: 'a new layer: a snapshot of P, or of the base device (an empty file system)',
    usage: 'ID [-p P]',
    options: { parent: { type: 'string', short: 'p', arg: 'P', help: 'the layer to snapshot (default: the base device)' } },
    positionals: ID,
    run: async (inv) => {
      const id = layerId(inv.positionals[0] as string);
      const parentText = str(inv.values, 'parent');
      const parent = parentText === undefined ? BASE_HASH : layerId(parentText);
      await poolStep(() => withPool(homeArgs(inv), ({ set }) => set.addDevice(id, parent)), HINTS);
      if (isJson(inv)) inv.out(json({ id, parent: parent === BASE_HASH ? null : parent }));
    },
  },
  {
    name: 'rm',
    summary: 'delete the layer (discarding its blocks); it must not be mounted',
    usage: 'ID',
    options: {},
    positionals: ID,
    run: async (inv) => {
      const id = layerId(inv.positionals[0] as string);
      await poolStep(
        () =>
          withPool(homeArgs(inv), async ({ home, set }) => {
            await set.deleteDevice(id);
            try {
              rmdirSync(join(home, 'mnt', id)); // the default mount point, if made and empty
            } catch {
              // none, or not empty: leave it
            }
          }),
        HINTS,
      );
      if (isJson(inv)) inv.out(json({ id, removed: true }));
    },
  },
  {
    name: 'mount',
    summary: 'mount the layer (default PATH: DIR/mnt/ID, made if missing); prints the mount path',
    usage: 'ID [PATH]',
    options: {},
    positionals: { min: 1, max: 2, missing: 'layer id' },
    run: async (inv) => {
      const id = layerId(inv.positionals[0] as string);
      const { home } = resolveHome(homeArgs(inv));
      const path = resolve(inv.positionals[1] ?? join(home, 'mnt', id));
      await poolStep(
        () =>
          withPool(homeArgs(inv), async ({ set }) => {
            if (!set.hasDevice(id)) throw new UnknownDeviceError(id);
            // Already mounted there by an earlier process: adopted; elsewhere: DeviceBusyError. The
            // folders are made only for a mount that is tried, and removed again if it fails.
            await set.mountDevice(id, path, '', { createMountPoint: true });
          }),
        HINTS,
      );
      inv.out(isJson(inv) ? json({ id, path }) : `${path}\n`);
    },
  },
  {
    name: 'umount',
    aliases: ['unmount'],
    summary: 'unmount it wherever it is mounted, and deactivate its device',
    usage: 'ID',
    options: {},
    positionals: ID,
    run: async (inv) => {
      const id = layerId(inv.positionals[0] as string);
      const paths = await poolStep(
        () =>
          withPool(homeArgs(inv), async ({ set }) => {
            const now = set.mountPoints(id);
            await set.unmountDevice(id); // wherever the kernel has it mounted; then deactivates
            return now;
          }),
        UMOUNT_HINTS,
      );
      if (isJson(inv)) inv.out(json({ id, unmounted: paths }));
    },
  },
  {
    name: 'ls',
    summary: "every layer: id, thin id, size, mapped, exclusive (mapped by it alone, from the pool's metadata), active, mounted",
    usage: '',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const rows = await poolStep(
        () =>
          withPool(homeArgs(inv), async ({ set, dm }) => {
            const table = mountTable();
            const exclusive = await exclusiveBytes(set);
            const list: LayerRow[] = [];
            for (const id of set.list().sort()) list.push(await layerRow(set, dm, id, exclusive, table));
            return list;
          }),
        HINTS,
      );
      inv.out(isJson(inv) ? json(rows) : formatLayerRows(rows));
    },
  },
  {
    name: 'status',
    summary: 'one layer: thin id, device, size, mapped sectors, mount points',
    usage: 'ID',
    options: {},
    positionals: ID,
    run: async (inv) => {
      const id = layerId(inv.positionals[0] as string);
      const row = await poolStep(
        () => withPool(homeArgs(inv), async ({ set, dm }) => layerRow(set, dm, id, await exclusiveBytes(set))),
        HINTS,
      );
      inv.out(isJson(inv) ? json(row) : formatLayerStatus(row));
    },
  },
];

export const group: Group = {
  name: 'layer',
  summary: "the pool's layers (thin snapshots); the pool's options as for 'devmapper pool'",
  common: homeOptions,
  commands,
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
