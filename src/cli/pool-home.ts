// The home folder of a pool: its options (Docker's dm.* list, recorded by `pool init` in
// DIR/storage-opts so later commands need not repeat it) and opening it for one command.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceName } from '../dm/names.js';
import { DeviceSet } from '../thin/device-set.js';
import { homePrefix } from '../thin/docker-home.js';
import { OptionError } from '../thin/errors.js';
import { POOL_STATE_FILE, writeFileAtomic } from '../thin/metadata-store.js';
import { PoolNaming } from '../thin/naming.js';
import { parsePoolOptions, type PoolOptions } from '../thin/options.js';
import type { Invocation, OptionSpec } from './command.js';
import { explain } from './errors.js';
import { formatBytes } from './pool-format.js';
import type { Progress } from './progress.js';
import { OperationError, UsageError } from './usage.js';

export const DEFAULT_HOME = '/var/lib/devmapper';
/** `<home>/storage-opts`: the --storage-opt list of `pool init` (JSON), so later commands need not repeat it. */
export const STORAGE_OPTS_FILE = 'storage-opts';

/** Options every pool/layer command takes. */
export const homeOptions: Readonly<Record<string, OptionSpec>> = {
  home: { type: 'string', arg: 'DIR', help: `the pool's folder (default ${DEFAULT_HOME})` },
  'storage-opt': {
    type: 'string',
    multiple: true,
    arg: 'dm.KEY=VALUE',
    help: "Docker's dm.* options (docs/pool.md); recorded by pool init in DIR/storage-opts, a key given again wins",
  },
  json: { type: 'boolean', help: 'machine-readable output (docs/cli.md, --json)' },
};

// ---- options ---------------------------------------------------------------------------------------

const keyOf = (opt: string): string => (opt.includes('=') ? opt.slice(0, opt.indexOf('=')).trim().toLowerCase() : opt);

/** The recorded options with the given ones laid over them: a key given again replaces every recorded entry of that key. */
export function mergeStorageOpts(recorded: readonly string[], given: readonly string[]): string[] {
  const givenKeys = new Set(given.map(keyOf));
  return [...recorded.filter((o) => !givenKeys.has(keyOf(o))), ...given];
}

/** Validates options as the pool will (with mkfs assumed present: a missing mkfs is the machine's
 *  fault, reported when the pool opens, not a usage error). */
export function checkStorageOpts(opts: readonly string[]): PoolOptions {
  try {
    return parsePoolOptions(opts, { findExecutable: () => '/bin/true' });
  } catch (e) {
    if (e instanceof OptionError) throw new UsageError(`--storage-opt ${e.message}`);
    throw e;
  }
}

export function readRecordedOpts(home: string): string[] {
  let text: string;
  try {
    text = readFileSync(join(home, STORAGE_OPTS_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    list = undefined; // a torn or edited file: the same answer as any other wrong content
  }
  if (!Array.isArray(list) || !list.every((o) => typeof o === 'string')) {
    throw new OperationError(`EUCLEAN: ${join(home, STORAGE_OPTS_FILE)} is not a JSON list of strings`);
  }
  return list;
}

/** As the pool's metadata: a new temp file (random name, O_EXCL, never a link someone placed), fsync, rename, fsync of home. */
export function writeRecordedOpts(home: string, opts: readonly string[]): void {
  writeFileAtomic(join(home, STORAGE_OPTS_FILE), `${JSON.stringify(opts)}\n`);
}

// ---- opening the pool ------------------------------------------------------------------------------

export interface HomeArgs {
  home?: string | undefined;
  'storage-opt'?: string[] | undefined;
}

export interface OpenedPool {
  home: string;
  opts: string[];
  set: DeviceSet;
  dm: DeviceMapper;
}

/** The resolved home and effective options; usage errors before anything is touched. */
export function resolveHome(values: HomeArgs): { home: string; opts: string[]; parsed: PoolOptions } {
  const home = resolve(values.home ?? DEFAULT_HOME);
  const given = values['storage-opt'] ?? [];
  checkStorageOpts(given); // the given ones alone first, so a typo is named as given
  const opts = mergeStorageOpts(readRecordedOpts(home), given);
  return { home, opts, parsed: checkStorageOpts(opts) };
}

/**
 * Opens the pool of `home` and runs `fn`, then closes the DeviceSet (lock and control node) while
 * the pool stays up. Without `create`, the pool must exist and be active: a command other than
 * `pool init` never makes a 100G sparse file as a side effect.
 */
export async function withPool<T>(
  values: HomeArgs,
  fn: (p: OpenedPool) => Promise<T>,
  opts: { create?: boolean; progress?: Progress | undefined } = {},
): Promise<T> {
  const { home, opts: storageOpts, parsed } = resolveHome(values);
  if (!opts.create) requirePool(home);
  const dm = DeviceMapper.open();
  try {
    if (!opts.create) {
      const poolName = poolNameOf(home, parsed);
      if (dm.info({ name: poolName }) === null) {
        throw new OperationError(`ENXIO: the pool ${poolName} of ${home} is not active, it was shut down (${initHint(home)})`);
      }
    }
    const progress = opts.progress;
    let formatting: (() => void) | undefined;
    const set = await DeviceSet.open(home, storageOpts, {
      dm,
      hook: (point) => {
        if (!progress) return;
        if (point === 'base:activated')
          formatting = progress.begin(`formatting the base device (mkfs.${parsed.fs}, ${formatBytes(parsed.baseSizeBytes)})`);
        if (point === 'base:formatted') formatting?.();
      },
    }).catch((e: unknown) => {
      formatting?.();
      throw e;
    });
    try {
      if (opts.create) writeRecordedOpts(home, storageOpts);
      return await fn({ home, opts: storageOpts, set, dm });
    } finally {
      await set.close();
    }
  } finally {
    dm.close();
  }
}

function initHint(home: string): string {
  return `run 'devmapper pool init --home ${home}' first`;
}

/** A command other than `pool init` needs a pool in `home` (ENOENT before anything is opened). */
export function requirePool(home: string): void {
  if (!existsSync(join(home, 'metadata', POOL_STATE_FILE))) {
    throw new OperationError(`ENOENT: no pool in ${home} (${initHint(home)})`);
  }
}

/** The pool's dm name: dm.thinpooldev when given, else the name made from the home folder. */
function poolNameOf(home: string, parsed: PoolOptions): DeviceName {
  // The home's own prefix (a home adopted from Docker's driver: `docker`); DeviceSet.open checks a given one.
  return parsed.thinPoolDevice ?? PoolNaming.forHome(home, homePrefix(home, undefined, parsed.prefix)).poolName();
}

/** The name of the pool `home` would have, and whether the kernel has it now. */
export function poolActive(values: HomeArgs): { home: string; poolName: string; active: boolean } {
  const { home, parsed } = resolveHome(values);
  const poolName = poolNameOf(home, parsed);
  const dm = DeviceMapper.open();
  try {
    return { home, poolName, active: dm.info({ name: poolName }) !== null };
  } finally {
    dm.close();
  }
}

/** Advice for the errors a pool command can meet, by error name or errno. */
export const POOL_HINTS: Readonly<Record<string, string>> = {
  PoolLockedError: 'wait for that process to finish',
  EBUSY: "unmount it first ('devmapper layer umount ID'), or close what holds it",
  EEXIST: "choose another id, or remove it first ('devmapper layer rm ID')",
  MetadataCheckError: "'devmapper pool check' lists every problem",
  MetadataSnapshotBusyError: 'retry once that program is done with it',
  PoolActiveError: "shut the pool down first ('devmapper pool shutdown'); 'devmapper pool init' activates it again",
};

export function homeArgs(inv: Invocation): HomeArgs {
  return { home: inv.values['home'] as string | undefined, 'storage-opt': inv.values['storage-opt'] as string[] | undefined };
}

/** Runs a pool command body, its errors as one line with the pool's hints. */
export async function poolStep<T>(fn: () => Promise<T>, hints: Readonly<Record<string, string>> = POOL_HINTS): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw explain(err, hints);
  }
}
