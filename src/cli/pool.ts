// `devmapper pool ...`: the thin-pool manager (src/thin DeviceSet) from the command line. Every
// command opens the home folder (taking its lock), does one job and closes it again WITHOUT tearing
// the pool down: the pool, its loop devices and any mounted layer outlive the process. Only
// `pool shutdown` removes them. Also the helpers `devmapper layer` and `devmapper demo` share.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DeviceMapper } from '../dm/device-mapper.js';
import { DeviceSet, type PoolStatus } from '../thin/device-set.js';
import { OptionError } from '../thin/errors.js';
import { BASE_HASH, POOL_STATE_FILE } from '../thin/metadata-store.js';
import { mountTable } from '../thin/mount.js';
import { PoolNaming } from '../thin/naming.js';
import { parsePoolOptions, parseSize, type PoolOptions } from '../thin/options.js';
import { json } from './output.js';
import { Progress } from './progress.js';
import { noMorePositionals, OperationError, parse, positional, UsageError } from './usage.js';

export { OperationError };

export const DEFAULT_HOME = '/var/lib/devmapper';
/** `<home>/storage-opts`: the --storage-opt list of `pool init` (JSON), so later commands need not repeat it. */
export const STORAGE_OPTS_FILE = 'storage-opts';

export const poolHelp = `devmapper pool <command> [--home DIR] [--storage-opt dm.key=value]... [--json]
  init                 create the pool (sparse loop files by default) and its base device, or
                       re-activate an existing one; prints its status
  status               data and metadata used/total, block size, transaction id, loop files
  resize SIZE          grow the loop data file and the pool to SIZE (10G, 512M: binary units)
  shutdown             unmount every layer, remove the layers' and the pool's devices (data kept)

  --home DIR           the pool's folder (default ${DEFAULT_HOME})
  --storage-opt OPT    Docker's dm.* options (dm.basesize=20G, dm.loopdatasize=..., dm.fs=xfs,
                       dm.prefix=...; docs/pool.md); repeatable. Given to init, they are recorded in
                       DIR/${STORAGE_OPTS_FILE} and reused by later commands (a key given again wins).
  --json               machine-readable output`;

/** Options every pool/layer command takes. */
export const homeOptions = {
  home: { type: 'string' },
  'storage-opt': { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;


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
  const list: unknown = JSON.parse(text);
  if (!Array.isArray(list) || !list.every((o) => typeof o === 'string')) {
    throw new OperationError(`EUCLEAN: ${join(home, STORAGE_OPTS_FILE)} is not a JSON list of strings`);
  }
  return list;
}

export function writeRecordedOpts(home: string, opts: readonly string[]): void {
  const path = join(home, STORAGE_OPTS_FILE);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(opts)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

// ---- errors ----------------------------------------------------------------------------------------


const HINTS: Record<string, string> = {
  EACCES: 'run as root',
  EPERM: 'run as root',
  EWOULDBLOCK: 'wait for that process to finish',
  EBUSY: "unmount it first ('devmapper layer umount ID'), or close what holds it",
  ENOSPC: "grow the pool ('devmapper pool resize SIZE') or remove layers",
  EEXIST: "choose another id, or remove it first ('devmapper layer rm ID')",
  EUCLEAN: 'the metadata and the pool disagree: see docs/pool.md (Transactions)',
};

/** Any error as one line: `EBUSY: <what> (<what to do>)`. UsageError and OperationError pass through. */
export function explain(err: unknown, hints: Record<string, string> = {}): Error {
  if (err instanceof UsageError || err instanceof OperationError) return err;
  if (!(err instanceof Error)) return new OperationError(String(err));
  const code = (err as { code?: unknown }).code;
  let line = (err.message.split('\n')[0] ?? '').trim();
  if (typeof code === 'string') {
    if (!line.includes(code)) line = `${code}: ${line}`;
    const hint = hints[err.name] ?? hints[code] ?? HINTS[code];
    if (hint && !line.includes(hint)) line += ` (${hint})`;
  }
  const out = new OperationError(line);
  if (err.stack) out.stack = err.stack; // --debug shows where it really came from
  return out;
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
  opts: { create?: boolean; progress?: Progress } = {},
): Promise<T> {
  const { home, opts: storageOpts, parsed } = resolveHome(values);
  const initHint = `run 'devmapper pool init --home ${home}' first`;
  if (!opts.create && !existsSync(join(home, 'metadata', POOL_STATE_FILE))) {
    throw new OperationError(`ENOENT: no pool in ${home} (${initHint})`);
  }
  const dm = DeviceMapper.open();
  try {
    if (!opts.create) {
      const poolName = parsed.thinPoolDevice ?? PoolNaming.forHome(home, parsed.prefix).poolName();
      if (dm.info({ name: poolName }) === null) {
        throw new OperationError(`ENXIO: the pool ${poolName} of ${home} is not active, it was shut down (${initHint})`);
      }
    } else {
      mkdirSync(home, { recursive: true, mode: 0o700 });
    }
    const progress = opts.progress;
    let formatting: (() => void) | undefined;
    const set = await DeviceSet.open(home, storageOpts, {
      dm,
      hook: (point) => {
        if (!progress) return;
        if (point === 'base:activated') formatting = progress.begin(`formatting the base device (mkfs.${parsed.fs}, ${formatBytes(BigInt(parsed.baseSizeBytes))})`);
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
      set.close();
    }
  } finally {
    dm.close();
  }
}

// ---- formatting ------------------------------------------------------------------------------------

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1073741824n -> '1.0 GiB'; bytes under 1 KiB as '512 B'. */
export function formatBytes(n: bigint): string {
  if (n < 1024n) return `${n} B`;
  let unit = 0;
  let v = Number(n);
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${v.toFixed(1)} ${UNITS[unit]}`;
}

/** used/total as a percentage with one decimal ('-' for an empty total). */
export function percent(used: bigint, total: bigint): string {
  if (total === 0n) return '-';
  return `${(Number((used * 10000n) / total) / 100).toFixed(1)}%`;
}

/** Columns padded to their widest cell; `right` lists the right-aligned column indexes. */
export function formatColumns(rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, k) => (widths[k] = Math.max(widths[k] ?? 0, c.length)));
  return rows
    .map((r) => `${r.map((c, k) => (right.includes(k) ? c.padStart(widths[k] ?? 0) : c.padEnd(widths[k] ?? 0))).join('  ').trimEnd()}\n`)
    .join('');
}

/** A loop or dm device's /dev name from its "maj:min", for display. */
function devName(majMin: string): string {
  try {
    const name = /^DEVNAME=(.*)$/m.exec(readFileSync(`/sys/dev/block/${majMin}/uevent`, 'utf8'))?.[1];
    return name ? `/dev/${name} (${majMin})` : majMin;
  } catch {
    return majMin;
  }
}

export interface PoolStatusView extends PoolStatus {
  home: string;
  layers: number;
  baseSizeBytes: number;
}

export function formatPoolStatus(s: PoolStatusView): string {
  const state = s.state === 'ok' ? `ok, ${s.mode ?? 'rw'}${s.needsCheck ? ', needs_check' : ''}` : s.state;
  const head = formatColumns([
    ['pool', `${s.poolName} (${state})`],
    ['home', s.home],
    ['block size', formatBytes(BigInt(s.sectorSizeBytes))],
    ['base size', formatBytes(BigInt(s.baseSizeBytes))],
    ['transaction id', `${s.transactionId}`],
    ['data', s.dataFile ? `${s.dataFile} on ${devName(s.dataDevice)}` : devName(s.dataDevice)],
    ['metadata', s.metadataFile ? `${s.metadataFile} on ${devName(s.metadataDevice)}` : devName(s.metadataDevice)],
    ['layers', `${s.layers}`],
  ]);
  const usage = formatColumns(
    [
      ['', 'USED', 'TOTAL', 'USE%'],
      ['data', formatBytes(s.data.usedBytes), formatBytes(s.data.totalBytes), percent(s.data.usedBytes, s.data.totalBytes)],
      ['metadata', formatBytes(s.metadata.usedBytes), formatBytes(s.metadata.totalBytes), percent(s.metadata.usedBytes, s.metadata.totalBytes)],
    ],
    [1, 2, 3],
  );
  return `${head}\n${usage}`;
}

function statusView(home: string, set: DeviceSet): PoolStatusView {
  const base = set.deviceRecords().find((r) => r.hash === BASE_HASH);
  return { ...set.status(), home, layers: set.list().length, baseSizeBytes: base?.sizeBytes ?? 0 };
}

// ---- the command -----------------------------------------------------------------------------------

export async function run(argv: string[]): Promise<number> {
  const out = (t: string): boolean => process.stdout.write(t);
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    out(`${poolHelp}\n`);
    return command === undefined ? 2 : 0;
  }
  const hints = { PoolLockedError: HINTS['EWOULDBLOCK'] as string };
  try {
    switch (command) {
      case 'init':
      case 'status': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        noMorePositionals(positionals, 0);
        const progress = new Progress();
        const view = await withPool(values, async ({ home, set }) => statusView(home, set), {
          create: command === 'init',
          progress,
        });
        out(values.json ? json(view) : formatPoolStatus(view));
        return 0;
      }
      case 'resize': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        const sizeText = positional(positionals, 0, 'size');
        noMorePositionals(positionals, 1);
        let sizeBytes: number;
        try {
          sizeBytes = parseSize('size', sizeText);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        const view = await withPool(values, async ({ home, set }) => {
          await set.resizePool(sizeBytes);
          return statusView(home, set);
        });
        if (values.json) out(json(view));
        return 0;
      }
      case 'shutdown': {
        const { values, positionals } = parse(rest, homeOptions);
        if (values.help) return help(out);
        noMorePositionals(positionals, 0);
        const unmounted = await withPool(values, async ({ set }) => {
          // shutdown unmounts whatever the kernel's mount table has of the pool's devices.
          const table = mountTable();
          const done = set
            .deviceRecords()
            .flatMap((rec) => set.mountPoints(rec.hash, table).map((path) => ({ id: rec.hash === BASE_HASH ? '(base)' : rec.hash, path })));
          await set.shutdown();
          return done;
        });
        if (values.json) out(json({ unmounted }));
        else for (const u of unmounted) out(`unmounted ${u.id} from ${u.path}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown pool command '${command}' (devmapper pool --help)`);
    }
  } catch (e) {
    throw explain(e, hints);
  }
}

function help(out: (t: string) => void): number {
  out(`${poolHelp}\n`);
  return 0;
}
