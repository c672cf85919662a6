// `devmapper demo [--keep]`: the whole system in a few seconds. A thin pool on sparse files in a
// temporary home, the base ext4 device, four layers (snapshots of it and of each other) with files
// written through their mounts, and a table of what each layer shows and what it costs in the
// pool: how copy-on-write shares blocks. Then everything is removed (unless --keep).
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { DeviceMapper } from '../dm/device-mapper.js';
import { DEFAULT_REMOVE_RETRY, removeByPrefix } from '../dm/index.js';
import { detachLoop, listLoops } from '../loop/index.js';
import { DeviceSet } from '../thin/device-set.js';
import { BASE_HASH } from '../thin/metadata-store.js';
import { mountTable, unmountRetrying } from '../thin/mount.js';
import { PoolNaming } from '../thin/naming.js';
import { sectorsToBytes } from '../structs/units.js';
import { checkStorageOpts, explain, formatBytes, formatColumns, mergeStorageOpts, percent, writeRecordedOpts } from './pool.js';
import { Progress } from './progress.js';
import { noMorePositionals, parse } from './usage.js';
import { writeErr, writeOut } from './stdio.js';

export const demoHelp = `devmapper demo [--keep] [--storage-opt dm.key=value]...
  Makes a thin pool on sparse files in a temporary folder (under $TMPDIR, default /tmp), formats
  its base device (ext4), snapshots it into layers (os -> app -> app-v2, and os -> other), writes
  files into them through their mounts, prints what each layer holds and what it costs in the pool,
  then removes everything: layers, pool, loop devices, folder. Needs root and device-mapper
  ('npm run demo' boots the project's test VM where the kernel has none).

  --keep               keep the pool and its folder (prints how to look at it and remove it)
  --storage-opt OPT    override one of the demo's options (dm.loopdatasize=1G dm.loopmetadatasize=64M
                       dm.basesize=256M dm.prefix=devmapper-demo dm.mountopt=discard); repeatable`;

/** Small enough to run in seconds, big enough to show the numbers. */
// dm.mountopt=discard: a file deleted in a layer gives its blocks back (the thin device unmaps them).
export const DEMO_OPTS = [
  'dm.loopdatasize=1G',
  'dm.loopmetadatasize=64M',
  'dm.basesize=256M',
  'dm.prefix=devmapper-demo',
  'dm.mountopt=discard',
];

const MiB = 1024 * 1024;

/** One layer of the demo and what it does to its files. */
interface Plan {
  id: string;
  parent: string;
  write(root: string): void;
}

const put = (root: string, path: string, data: string | Buffer): void => {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), data);
};

const PLANS: Plan[] = [
  {
    id: 'os',
    parent: BASE_HASH,
    write: (r) => {
      put(r, 'etc/os-release', 'NAME="demo os"\nVERSION_ID=1\n');
      put(r, 'usr/lib/libdemo.so', randomBytes(8 * MiB));
      put(r, 'usr/bin/tool', randomBytes(MiB / 4));
    },
  },
  {
    id: 'app',
    parent: 'os',
    write: (r) => {
      put(r, 'app/server.js', "console.log('v1')\n");
      put(r, 'app/assets.bin', randomBytes(4 * MiB));
    },
  },
  {
    id: 'app-v2',
    parent: 'app',
    write: (r) => {
      put(r, 'app/server.js', "console.log('v2')\n");
      unlinkSync(join(r, 'app/assets.bin'));
      put(r, 'app/cache.bin', randomBytes(MiB));
    },
  },
  {
    id: 'other',
    parent: 'os',
    write: (r) => {
      put(r, 'etc/os-release', 'NAME="demo os"\nVERSION_ID=1\nVARIANT=other\n');
      put(r, 'srv/data.bin', randomBytes(2 * MiB));
    },
  },
];

type Listing = Map<string, { size: number; sum: string }>;

/** Every regular file under a mount (lost+found aside): path -> size and content hash. */
function listFiles(root: string, sub = '', out: Listing = new Map()): Listing {
  for (const e of readdirSync(join(root, sub), { withFileTypes: true })) {
    const rel = sub === '' ? e.name : `${sub}/${e.name}`;
    if (rel === 'lost+found') continue;
    if (e.isDirectory()) listFiles(root, rel, out);
    else if (e.isFile()) {
      const data = readFileSync(join(root, rel));
      out.set(rel, { size: data.length, sum: createHash('sha256').update(data).digest('hex') });
    }
  }
  return out;
}

/** `+ added ~ changed - deleted` against the parent's files. */
export function diffListing(parent: Listing, child: Listing): string {
  const parts: string[] = [];
  for (const [p, f] of child) {
    const was = parent.get(p);
    if (!was) parts.push(`+${p}`);
    else if (was.sum !== f.sum) parts.push(`~${p}`);
  }
  for (const p of parent.keys()) if (!child.has(p)) parts.push(`-${p}`);
  return parts.join(' ');
}

const totalSize = (l: Listing): bigint => [...l.values()].reduce((a, f) => a + BigInt(f.size), 0n);

interface Row {
  id: string;
  parent: string;
  thinId: number;
  files: Listing;
  changes: string;
  mappedBytes: bigint;
  /** Data blocks only this device maps, counted in the pool's metadata. */
  exclusiveBytes: bigint;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    keep: { type: 'boolean' },
    'storage-opt': { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    writeOut(`${demoHelp}\n`);
    return 0;
  }
  noMorePositionals(positionals, 0);
  const given = values['storage-opt'] ?? [];
  checkStorageOpts(given);
  const opts = mergeStorageOpts(DEMO_OPTS, given);
  const parsed = checkStorageOpts(opts);
  try {
    return await demo(opts, parsed.prefix, values.keep ?? false);
  } catch (e) {
    throw explain(e);
  }
}

async function demo(opts: string[], prefix: string, keep: boolean): Promise<number> {
  const out = (t: string): void => writeOut(t);
  const progress = new Progress();
  const started = process.hrtime.bigint();
  const dm = DeviceMapper.open(); // first: a kernel without device-mapper fails before any folder is made
  const home = mkdtempSync(join(tmpdir(), 'devmapper-demo-'));
  const stem = PoolNaming.forHome(home, prefix).stem;
  let set: DeviceSet | undefined;
  let failure: unknown;
  try {
    set = await progress.step(`creating a thin pool on sparse files in ${home}, formatting its base device`, () =>
      DeviceSet.open(home, opts, { dm }),
    );
    writeRecordedOpts(home, opts); // so that `devmapper layer ls --home` works on a kept home
    const s = set;
    const mnt = (id: string): string => {
      const p = join(home, 'mnt', id);
      mkdirSync(p, { recursive: true });
      return p;
    };

    const base = s.deviceRecords().find((r) => r.hash === BASE_HASH);
    const rows: Row[] = [
      {
        id: '(base)',
        parent: '-',
        thinId: base?.deviceId ?? 0,
        files: new Map(),
        changes: 'mkfs.ext4',
        mappedBytes: 0n,
        exclusiveBytes: 0n,
      },
    ];
    const listings = new Map<string, Listing>([[BASE_HASH, new Map()]]);
    for (const plan of PLANS) {
      await progress.step(
        `layer ${plan.id}: snapshot of ${plan.parent === BASE_HASH ? 'the base device' : plan.parent}, files written through its mount`,
        async () => {
          await s.addDevice(plan.id, plan.parent);
          const path = mnt(plan.id);
          await s.mountDevice(plan.id, path);
          let files: Listing;
          try {
            plan.write(path);
            files = listFiles(path);
          } finally {
            await s.unmountDevice(plan.id);
          }
          listings.set(plan.id, files);
          const rec = s.deviceRecords().find((r) => r.hash === plan.id);
          rows.push({
            id: plan.id,
            parent: plan.parent === BASE_HASH ? '(base)' : plan.parent,
            thinId: rec?.deviceId ?? -1,
            files,
            changes: diffListing(listings.get(plan.parent) ?? new Map(), files),
            mappedBytes: 0n,
            exclusiveBytes: 0n,
          });
        },
      );
    }
    for (const row of rows) {
      const st = await s.getDeviceStatus(row.id === '(base)' ? BASE_HASH : row.id);
      row.mappedBytes = sectorsToBytes(st.mappedSectors);
    }
    const status = s.status();
    // Exact: every thin device's mappings counted in the pool's own metadata (a metadata snapshot).
    const exclusive = new Map((await s.thins()).map((t) => [t.thinId, BigInt(t.exclusiveBlocks) * status.sectorSizeBytes]));
    for (const row of rows) row.exclusiveBytes = exclusive.get(row.thinId) ?? 0n;

    // Copy-on-write seen through files: both versions mounted at once.
    const cow = await progress.step('mounting app and app-v2 side by side', async () => {
      const lines: string[][] = [];
      for (const id of ['app', 'app-v2']) {
        const path = mnt(id);
        await s.mountDevice(id, path);
        try {
          const server = readFileSync(join(path, 'app/server.js'), 'utf8').trim();
          let assets: string;
          try {
            assets = formatBytes(BigInt(statSync(join(path, 'app/assets.bin')).size));
          } catch {
            assets = '(deleted)';
          }
          lines.push([`  ${id}`, `app/server.js: ${server}`, `app/assets.bin: ${assets}`]);
        } finally {
          await s.unmountDevice(id);
        }
      }
      return lines;
    });

    out(
      `thin pool ${status.poolName}\n` +
        `  on sparse files in ${home}: data ${formatBytes(status.data.totalBytes)}, metadata ${formatBytes(status.metadata.totalBytes)}, ` +
        `blocks of ${formatBytes(status.sectorSizeBytes)}; every layer is a ${formatBytes(base?.sizeBytes ?? 0n)} ext4 device\n\n`,
    );
    out(
      formatColumns(
        [
          ['LAYER', 'PARENT', 'THIN ID', 'FILES', 'MAPPED', 'EXCLUSIVE', 'CHANGES (+ added, ~ changed, - deleted)'],
          ...rows.map((r) => [
            r.id,
            r.parent,
            `${r.thinId}`,
            `${r.files.size} (${formatBytes(totalSize(r.files))})`,
            formatBytes(r.mappedBytes),
            formatBytes(r.exclusiveBytes),
            r.changes,
          ]),
        ],
        [2, 4, 5],
      ),
    );
    const mappedSum = rows.reduce((a, r) => a + r.mappedBytes, 0n);
    const used = status.data.usedBytes;
    out(
      `\nMAPPED: the blocks each thin device maps (what it would cost alone); EXCLUSIVE: the blocks it alone\n` +
        `maps (what deleting it alone frees), counted in the pool's own metadata. Together the ${rows.length} devices map ${formatBytes(mappedSum)}; the pool holds ` +
        `${formatBytes(used)} of ${formatBytes(status.data.totalBytes)} (${percent(used, status.data.totalBytes)}):\n` +
        `${formatBytes(mappedSum > used ? mappedSum - used : 0n)} is shared by copy-on-write. Metadata: ${formatBytes(status.metadata.usedBytes)} ` +
        `of ${formatBytes(status.metadata.totalBytes)}.\n\nthe same path in two layers, mounted at once:\n`,
    );
    out(formatColumns(cow));

    if (keep) {
      out(`\n${keptText(home, status.poolName, PLANS.length)}`);
      return 0;
    }
    await progress.step('removing the layers (their blocks discarded)', async () => {
      for (const plan of [...PLANS].reverse()) await s.deleteDevice(plan.id);
    });
    const afterDelete = s.status().data.usedBytes;
    await progress.step('removing the pool and its loop devices', () => s.shutdown());
    out(
      `\nremoved the layers (pool data used back to ${formatBytes(afterDelete)}: the base device), the pool, its loop devices and ${home}\n`,
    );
  } catch (e) {
    failure = e;
  } finally {
    if (!keep || failure !== undefined) {
      if (keep)
        writeErr(
          `devmapper demo: kept ${home} after the failure below; remove it with: ${cliCommand()} pool shutdown --home ${home} && rm -rf ${home}\n`,
        );
      else {
        await set?.close();
        const left = await removeLeftovers(dm, home, stem);
        if (left.length > 0 && failure === undefined) failure = new Error(`EBUSY: could not remove ${left.join(', ')}`);
      }
    } else {
      await set?.close();
    }
    dm.close();
  }
  if (failure !== undefined) throw failure;
  progress.note(`done in ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s`);
  return 0;
}

/** The guest of scripts/vm/guest-run sets DEVMAPPER_GUEST; its /tmp and devices end with it. */
function inThrowawayGuest(): boolean {
  return (process.env['DEVMAPPER_GUEST'] ?? '') !== '' && process.stdin.isTTY !== true;
}

/** How to call this CLI again: `devmapper` when that is on PATH and is us, else our own path. */
export function cliCommand(): string {
  const self = process.argv[1] ? resolve(process.argv[1]) : '';
  if (self === '' || basename(self) !== 'devmapper') return 'devmapper';
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, 'devmapper');
    try {
      if (existsSync(p) && realpathSync(p) === realpathSync(self)) return 'devmapper';
    } catch {
      // unreadable: not this one
    }
  }
  return self;
}

/** What --keep prints: commands that work where the demo ran, or why there is nothing to look at. */
export function keptText(home: string, poolName: string, layers: number, guest = inThrowawayGuest(), cli = cliCommand()): string {
  if (guest) {
    return (
      `kept: ${home} (pool ${poolName}, ${layers} layers) in the test guest, which powers off now: its /tmp, the pool\n` +
      `and its devices go with it. To keep a pool and look at it, run the demo in the guest's shell\n` +
      `(scripts/vm/guest-run --shell, then: bin/devmapper demo --keep), or on a host with device-mapper\n` +
      `(sudo bin/devmapper demo --keep).\n`
    );
  }
  return (
    `kept: ${home} (pool ${poolName}, ${layers} layers)\n` +
    `  look:   ${cli} layer ls --home ${home}\n` +
    `  remove: ${cli} pool shutdown --home ${home} && rm -rf ${home}\n`
  );
}

/**
 * Whatever a failed (or interrupted) demo left: mounts under the home, dm devices of the home's
 * names (thin devices before the pool), loop devices on its files, the folder. Returns what stayed.
 */
async function removeLeftovers(dm: DeviceMapper, home: string, stem: string): Promise<string[]> {
  const left: string[] = [];
  for (const m of mountTable()
    .filter((x) => x.mountPoint.startsWith(`${home}/`))
    .reverse()) {
    await unmountRetrying(m.mountPoint).catch(() => left.push(m.mountPoint));
  }
  // Thin devices before their pool, suspended ones resumed first (the library's teardown).
  const teardown = await removeByPrefix(dm, `${stem}-`, { retry: DEFAULT_REMOVE_RETRY });
  for (const f of teardown.failed) left.push(f.name);
  for (const l of listLoops()) {
    const file = l.backingFile.replace(/ \(deleted\)$/, '');
    if (!file.startsWith(`${home}/`)) continue;
    await detachLoop(l.number, { expectBackingFile: file }).catch(() => left.push(l.path));
  }
  if (left.length === 0) rmSync(home, { recursive: true, force: true });
  return left;
}
