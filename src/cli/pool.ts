// `devmapper pool ...`: the thin-pool manager (src/thin DeviceSet) from the command line. Every
// command opens the home folder (taking its lock), does one job and closes it again WITHOUT tearing
// the pool down: the pool, its loop devices and any mounted layer outlive the process. Only
// `pool shutdown` removes them.
import { DeviceSet } from '../thin/device-set.js';
import { BASE_HASH } from '../thin/metadata-store.js';
import type { Bytes } from '../structs/units.js';
import { parseSize } from '../thin/options.js';
import { METADATA_BLOCK_BYTES } from '../thin/pool-setup.js';
import { THIN_METADATA_MAX_BYTES } from '../thin/resize.js';
import { EXIT_FAILED, flag, runGroup, type Command, type Group, type Invocation } from './command.js';
import { json } from './output.js';
import {
  checkView,
  formatBytes,
  formatCheck,
  formatPoolStatus,
  formatThinRows,
  poolView,
  thinRows,
  type PoolStatusView,
} from './pool-format.js';
import {
  DEFAULT_HOME,
  homeOptions,
  poolActive,
  requirePool,
  resolveHome,
  STORAGE_OPTS_FILE,
  homeArgs,
  POOL_HINTS,
  poolStep,
  withPool,
} from './pool-home.js';
import { monitorCommand } from './pool-monitor.js';
import { Progress } from './progress.js';
import { UsageError } from './usage.js';

// What demo.ts and layer.ts share with this module.
export { explain } from './errors.js';
export { formatBytes, formatColumns, percent, formatPoolStatus, type PoolStatusView } from './pool-format.js';
export { checkStorageOpts, DEFAULT_HOME, mergeStorageOpts, readRecordedOpts, writeRecordedOpts, withPool } from './pool-home.js';
export { OperationError } from './usage.js';
export { homeArgs, POOL_HINTS, poolStep } from './pool-home.js';

/** A mount point that will not let go is held by a process, not by us. */
export const MOUNT_IN_USE =
  "a process uses the mount (a shell cd'd into it, an open file): find it with 'fuser -vm PATH', end it, then retry";

function statusView(home: string, set: DeviceSet): PoolStatusView {
  const base = set.deviceRecords().find((r) => r.hash === BASE_HASH);
  return poolView(set.status(), home, set.list().length, base?.sizeBytes ?? 0n);
}

const isJson = (inv: Invocation): boolean => flag(inv.values, 'json');

function sizeArg(text: string, what = 'SIZE'): Bytes {
  try {
    return parseSize(what, text);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** What `pool resize` asks for: data and/or metadata sizes, or what the devices hold now. */
interface ResizeArgs {
  data?: Bytes;
  metadata?: Bytes;
}

function resizeArgs(inv: Invocation): ResizeArgs {
  const out: ResizeArgs = {};
  const size = inv.positionals[0] as string | undefined;
  const meta = inv.values['metadata'] as string | undefined;
  if (size !== undefined) out.data = sizeArg(size);
  if (meta !== undefined) out.metadata = sizeArg(meta, '--metadata');
  const toDevices = flag(inv.values, 'to-devices');
  if (toDevices && (size !== undefined || meta !== undefined)) throw new UsageError('--to-devices takes no SIZE or --metadata SIZE');
  if (!toDevices && size === undefined && meta === undefined) throw new UsageError('missing size: SIZE, --metadata SIZE or --to-devices');
  return out;
}

/** What resize can do, checked against the pool before anything changes; sizes in units. */
function checkResize(view: PoolStatusView, want: ResizeArgs): void {
  const shown = (size: Bytes, what: string) => `${what} ${formatBytes(size)} (${size} bytes)`;
  const { data, metadata } = want;
  if (data !== undefined) {
    if (data % view.blockSizeBytes !== 0n) {
      const down = (data / view.blockSizeBytes) * view.blockSizeBytes;
      throw new UsageError(
        `${shown(data, 'SIZE')} is not a multiple of the pool's block size ${formatBytes(view.blockSizeBytes)} (e.g. ${down} or ${down + view.blockSizeBytes})`,
      );
    }
    const growsMetadata = metadata !== undefined && metadata > view.metadata.totalBytes;
    if (data < view.data.totalBytes || (data === view.data.totalBytes && !growsMetadata)) {
      throw new UsageError(`${shown(data, 'SIZE')}: the pool's data is ${formatBytes(view.data.totalBytes)} already; it can only grow`);
    }
  }
  if (metadata !== undefined) {
    const block = BigInt(METADATA_BLOCK_BYTES);
    if (metadata % block !== 0n)
      throw new UsageError(`${shown(metadata, '--metadata')} is not a multiple of 4 KiB (the metadata block size)`);
    if (metadata > THIN_METADATA_MAX_BYTES) {
      throw new UsageError(
        `${shown(metadata, '--metadata')}: dm-thin uses at most ${formatBytes(THIN_METADATA_MAX_BYTES)} of a metadata device`,
      );
    }
    const growsData = data !== undefined && data > view.data.totalBytes;
    if (metadata < view.metadata.totalBytes || (metadata === view.metadata.totalBytes && !growsData)) {
      throw new UsageError(
        `${shown(metadata, '--metadata')}: the pool's metadata is ${formatBytes(view.metadata.totalBytes)} already; it can only grow`,
      );
    }
  }
}

const commands: Command[] = [
  {
    name: 'init',
    summary: 'create the pool (sparse loop files by default) and its base device, or re-activate an existing one; prints its status',
    usage: '[--home DIR] [--storage-opt dm.KEY=VALUE]...',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const view = await poolStep(() =>
        withPool(homeArgs(inv), async ({ home, set }) => statusView(home, set), { create: true, progress: new Progress() }),
      );
      inv.out(isJson(inv) ? json(view) : formatPoolStatus(view));
    },
  },
  {
    name: 'status',
    summary: 'data and metadata used/total, block size, transaction id, loop files',
    usage: '[--home DIR]',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const view = await poolStep(() => withPool(homeArgs(inv), async ({ home, set }) => statusView(home, set)));
      inv.out(isJson(inv) ? json(view) : formatPoolStatus(view));
    },
  },
  {
    name: 'resize',
    summary:
      'grow the pool: its data to SIZE, its metadata to --metadata SIZE (loop files are grown; 10G, 512M: binary units), or both to what their block devices hold now (--to-devices)',
    usage: '[SIZE] [--metadata SIZE] [--to-devices] [--home DIR]',
    options: {
      metadata: {
        type: 'string',
        arg: 'SIZE',
        help: "the metadata device's new size (a multiple of 4 KiB, at most 15.875G: dm-thin's limit)",
      },
      'to-devices': { type: 'boolean', help: 'grow data and metadata to the sizes of their devices now (block devices that grew)' },
    },
    positionals: { min: 0, max: 1 },
    details:
      'The pool is suspended for the table swap only; a failure resumes its old table. Sizes only grow. ' +
      'A pool on block devices (dm.datadev, dm.metadatadev) is grown after its devices: SIZE and --metadata SIZE must fit them.',
    run: async (inv) => {
      const want = resizeArgs(inv);
      const view = await poolStep(() =>
        withPool(homeArgs(inv), async ({ home, set }) => {
          checkResize(statusView(home, set), want);
          await set.resizePool({
            ...(want.data !== undefined ? { dataBytes: want.data } : {}),
            ...(want.metadata !== undefined ? { metadataBytes: want.metadata } : {}),
          });
          return statusView(home, set);
        }),
      );
      inv.out(isJson(inv) ? json(view) : formatPoolStatus(view));
    },
  },
  {
    name: 'thins',
    summary:
      "every thin id in the pool, from the pool's own metadata: the layer on it, mapped, exclusive and shared data, creation and snapshot times",
    usage: '[--home DIR]',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const rows = await poolStep(() =>
        withPool(homeArgs(inv), async ({ set }) => thinRows(await set.thins(), set.status().sectorSizeBytes)),
      );
      inv.out(isJson(inv) ? json(rows) : formatThinRows(rows));
    },
  },
  {
    name: 'check',
    summary: 'check the metadata of a pool that is shut down (as thin_check): exit 0 when clean, else 1 and one line per problem',
    usage: '[--home DIR]',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const view = await poolStep(async () => {
        const { home, opts } = resolveHome(homeArgs(inv));
        requirePool(home);
        return checkView(DeviceSet.checkMetadata(home, opts), home);
      });
      inv.out(isJson(inv) ? json(view) : formatCheck(view));
      return view.ok ? undefined : EXIT_FAILED;
    },
  },
  monitorCommand,
  {
    name: 'shutdown',
    summary: "unmount every layer, remove the layers' and the pool's devices (data kept); a pool not active: says so, exit 0",
    usage: '[--home DIR]',
    options: {},
    positionals: { min: 0, max: 0 },
    run: async (inv) => {
      const args = homeArgs(inv);
      const state = await poolStep(async () => poolActive(args));
      if (!state.active) {
        // Stop scripts run it twice: nothing to do is not a failure.
        if (isJson(inv)) inv.out(json({ poolName: state.poolName, home: state.home, active: false, unmounted: [] }));
        else inv.out(`pool ${state.poolName} of ${state.home} is not active: nothing to shut down\n`);
        return;
      }
      const unmounted = await poolStep(
        async () => {
          // Unmounts whatever the kernel's mount table has of the pool's devices and says where; works
          // from the kernel's side alone when the metadata files cannot be read.
          const { home, opts } = resolveHome(args);
          const r = await DeviceSet.shutdownHome(home, opts);
          const list = r.active ? r.unmounted : [];
          return list.map(({ hash, path }) => ({ id: hash === BASE_HASH ? '(base)' : hash, path }));
        },
        { ...POOL_HINTS, DeviceBusyError: MOUNT_IN_USE },
      );
      if (isJson(inv)) inv.out(json({ poolName: state.poolName, home: state.home, active: false, unmounted }));
      else for (const u of unmounted) inv.out(`unmounted ${u.id} from ${u.path}\n`);
    },
  },
];

export const group: Group = {
  name: 'pool',
  summary: 'the thin pool of a home folder (docs/pool.md)',
  common: homeOptions,
  commands,
  details:
    `Options given to init are recorded in DIR/${STORAGE_OPTS_FILE} and reused by later commands. ` + `The default DIR is ${DEFAULT_HOME}.`,
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
