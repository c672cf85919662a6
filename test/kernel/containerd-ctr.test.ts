// A real containerd 1.6 and its ctr against `devmapper snapshotter serve`: an image archive built
// here (four layers: files, modes, symlinks, a whiteout, an opaque dir) is imported and unpacked
// through the proxy snapshotter, then ctr lists, inspects, views and removes the snapshots, and the
// unpacked rootfs, mounted by this test as containerd's clients do, is compared file by file with
// what the layers say. The same image unpacked by containerd's native snapshotter is the control.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../support/prng.js';
import { buildOciArchive, expectedTree, type LayerSpec, type OciArchive, type TreeNode } from '../support/oci-archive.js';
import type { WireInfo } from '../../src/snapshotter/wire.js';
import { listSnapshots } from '../support/snapshots-client.js';
import { oracleLs, requireDeviceMapper } from './support/env.js';
import { Containerd, exitOf, type MountCommand, parseMountCommands, parseSnapshotsLs, run, runOk, sleep } from './support/containerd.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(REPO, 'bin', 'devmapper');
/**
 * The proxy's name in containerd's config. Not "devmapper": containerd 1.6 registers its built-in
 * devmapper snapshotter as io.containerd.snapshotter.v1.devmapper, and a proxy plugin of the same
 * name makes it panic at start ("plugin: id already registered").
 */
const SNAPSHOTTER = 'dmthin';
const IMAGE = 'local/x:latest';
/** Each ctr run starts a Go binary, several seconds in user-mode-linux on a busy host. */
const CTR_TEST_TIMEOUT_MS = 600_000;

function bytes(seed: number, n: number): Buffer {
  const next = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
  return b;
}

const LONG = `usr/share/${'a'.repeat(90)}/${'b'.repeat(80)}`;
const LAYERS: readonly LayerSpec[] = [
  {
    entries: [
      { kind: 'dir', path: 'bin', mode: 0o755 },
      { kind: 'file', path: 'bin/tool', content: bytes(1, 1 << 20), mode: 0o755 },
      { kind: 'dir', path: 'etc', mode: 0o755 },
      { kind: 'file', path: 'etc/os-release', content: 'NAME=lower\n', mode: 0o644 },
      { kind: 'file', path: 'etc/secret', content: 'to be whited out\n', mode: 0o600 },
      { kind: 'dir', path: 'etc/conf.d', mode: 0o755 },
      { kind: 'file', path: 'etc/conf.d/a.conf', content: 'a=1\n', mode: 0o644 },
      { kind: 'dir', path: 'var', mode: 0o755 },
      { kind: 'dir', path: 'var/lib', mode: 0o700 },
      { kind: 'file', path: 'var/lib/state', content: 'hidden by an opaque dir\n', mode: 0o644 },
      { kind: 'dir', path: 'usr', mode: 0o755 },
      { kind: 'dir', path: 'usr/share', mode: 0o755 },
      { kind: 'dir', path: dirname(LONG), mode: 0o755 },
      { kind: 'file', path: LONG, content: 'a long path\n', mode: 0o444 },
    ],
  },
  {
    entries: [
      { kind: 'file', path: 'etc/os-release', content: 'NAME=upper\nVERSION=2\n', mode: 0o640 },
      { kind: 'whiteout', path: 'etc/secret' },
      { kind: 'whiteout', path: 'etc/conf.d' },
      { kind: 'symlink', path: 'bin/sh', target: 'tool' },
      { kind: 'symlink', path: 'etc/localtime', target: '/usr/share/zoneinfo/UTC' },
      { kind: 'file', path: 'bin/setuid', content: '#!/bin/sh\n', mode: 0o4755 },
    ],
  },
  {
    entries: [
      { kind: 'opaque', path: 'var/lib' },
      { kind: 'file', path: 'var/lib/fresh', content: bytes(2, 70_000), mode: 0o600 },
      { kind: 'dir', path: 'var/shared', mode: 0o2775 },
      { kind: 'dir', path: 'tmp', mode: 0o1777 },
    ],
  },
  {
    entries: [
      { kind: 'file', path: 'etc/empty', content: '', mode: 0o644 },
      { kind: 'dir', path: 'etc/conf.d', mode: 0o750 },
      { kind: 'file', path: 'etc/conf.d/b.conf', content: 'b=2\n', mode: 0o644 },
      { kind: 'file', path: 'bin/sh', content: 'now a file\n', mode: 0o755 },
    ],
  },
];

/** The mounted tree as TreeNodes, the root itself excluded; every entry must be owned by root. */
function readTree(root: string): Map<string, TreeNode> {
  const tree = new Map<string, TreeNode>();
  const owners: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      if (st.uid !== 0 || st.gid !== 0) owners.push(`${rel} ${st.uid}:${st.gid}`);
      if (st.isDirectory()) {
        tree.set(rel, { kind: 'dir', mode: st.mode & 0o7777 });
        walk(p);
      } else if (st.isSymbolicLink()) {
        tree.set(rel, { kind: 'symlink', target: readlinkSync(p) });
      } else if (st.isFile()) {
        tree.set(rel, { kind: 'file', mode: st.mode & 0o7777, content: readFileSync(p) });
      } else {
        throw new Error(`${rel}: unexpected file type (mode ${st.mode.toString(8)})`);
      }
    }
  };
  walk(root);
  expect(owners).toEqual([]);
  return tree;
}

/** Compares path by path so a failure names the path rather than dumping two megabytes. */
function expectTree(actual: Map<string, TreeNode>, expected: Map<string, TreeNode>): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (want.kind === 'file' && got?.kind === 'file') {
      expect({ path, mode: got.mode.toString(8), size: got.content.length }).toEqual({
        path,
        mode: want.mode.toString(8),
        size: want.content.length,
      });
      expect(got.content.equals(want.content), `${path}: content differs`).toBe(true);
    } else {
      expect({ path, ...got }).toEqual({ path, ...want });
    }
  }
}

async function mountAll(mounts: readonly MountCommand[], target: string): Promise<void> {
  expect(mounts).toHaveLength(1);
  for (const m of mounts) {
    await runOk('mount', ['-t', m.type, ...(m.options.length > 0 ? ['-o', m.options.join(',')] : []), m.source, target]);
  }
}

const expected = expectedTree(LAYERS);
let work = '';
let image: OciArchive;
let archivePath = '';

beforeAll(() => {
  requireDeviceMapper();
  work = mkdtempSync(join(tmpdir(), 'dmtest-ctr-'));
  image = buildOciArchive(LAYERS);
  archivePath = join(work, 'image.tar');
  writeFileSync(archivePath, image.archive);
});

afterAll(() => {
  if (work !== '') rmSync(work, { recursive: true, force: true });
});

/** ctr images import of the test image into `snapshotter`, and the image's name it reports. */
async function importImage(cd: Containerd, snapshotter: string): Promise<void> {
  await cd.ctrOk(['images', 'import', '--snapshotter', snapshotter, '--base-name', 'local/x', archivePath], 600_000);
  const names = (await cd.ctrOk(['images', 'ls', '-q'])).trim().split('\n');
  expect(names).toEqual([IMAGE]);
}

/** The chain of committed snapshots, as ctr lists them: one per layer, each the parent of the next. */
async function expectChain(cd: Containerd, snapshotter: string): Promise<void> {
  const ls = parseSnapshotsLs(await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'ls']));
  const want = image.chainIds.map((key, i) => ({ key, parent: i === 0 ? '' : image.chainIds[i - 1], kind: 'Committed' }));
  expect(ls.sort((a, b) => a.key.localeCompare(b.key))).toEqual(want.sort((a, b) => a.key.localeCompare(b.key)));
}

/** A read-only view of the top layer, mounted, compared with the layers, unmounted and removed. */
async function checkView(cd: Containerd, snapshotter: string, fsType: string | null): Promise<MountCommand[]> {
  const top = image.chainIds.at(-1) ?? '';
  const viewKey = `dmtest-view-${process.pid}`;
  const target = join(work, `mnt-${snapshotter}`);
  mkdirSync(target, { recursive: true });
  await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'view', viewKey, top]);
  let mounted = false;
  try {
    const mounts = parseMountCommands(await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'mounts', target, viewKey]));
    if (fsType !== null) {
      expect(mounts.map((m) => ({ type: m.type, ro: m.options.includes('ro') }))).toEqual([{ type: fsType, ro: true }]);
    }
    await mountAll(mounts, target);
    mounted = true;
    const tree = readTree(target);
    expectTree(tree, expected);
    // A view is read-only: writing into it fails (EROFS).
    expect(() => writeFileSync(join(target, 'etc', 'written'), 'x')).toThrow(/EROFS|read-only/);
    return mounts;
  } finally {
    if (mounted) await runOk('umount', [target]);
    await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'rm', viewKey]);
  }
}

/**
 * `ctr images rm`, then the chain removed with `ctr snapshots rm`, top first. Each layer is first
 * labelled a garbage-collection root: containerd's image references only the top snapshot, so
 * without the label its collector would take the whole chain as soon as the top one goes.
 */
async function removeAll(cd: Containerd, snapshotter: string): Promise<void> {
  const ls = async (): Promise<string[]> =>
    parseSnapshotsLs(await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'ls']))
      .map((s) => s.key)
      .sort();
  for (const key of image.chainIds)
    await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'label', key, 'containerd.io/gc.root=dmtest']);
  await cd.ctrOk(['images', 'rm', '--sync', IMAGE]);
  expect(await cd.ctrOk(['images', 'ls', '-q'])).toBe('');
  expect(await ls()).toEqual([...image.chainIds].sort());
  for (const [i, key] of [...image.chainIds.entries()].reverse()) {
    await cd.ctrOk(['snapshots', '--snapshotter', snapshotter, 'rm', key]);
    if (i === image.chainIds.length - 1) expect(await ls()).toEqual(image.chainIds.slice(0, i).sort());
  }
  expect(await ls()).toEqual([]);
}

/** containerd removes from the snapshotter in a garbage-collection pass after its own records: wait for it. */
async function serverListAfterCollection(socket: string): Promise<WireInfo[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const listed = await listSnapshots(socket);
    if (listed.length === 0 || Date.now() > deadline) return listed;
    await sleep(500);
  }
}

/** The dm devices (dmsetup ls) and loop backing files (losetup) that exist, to show nothing leaked. */
async function kernelObjects(): Promise<{ dm: string[]; loops: string[] }> {
  const loops = await runOk('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
  return {
    dm: [...oracleLs().keys()].sort(),
    loops: loops
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .sort(),
  };
}

describe('containerd with its native snapshotter (the control)', () => {
  it('imports the image and unpacks the rootfs the layers describe', { timeout: CTR_TEST_TIMEOUT_MS }, async () => {
    const cd = await Containerd.start(join(work, 'containerd-native'));
    try {
      await importImage(cd, 'native');
      await expectChain(cd, 'native');
      await checkView(cd, 'native', null);
      await removeAll(cd, 'native');
    } catch (e) {
      console.error(`--- containerd log\n${cd.log()}`);
      throw e;
    } finally {
      await cd.stop();
      cd.remove();
    }
  });
});

interface Server {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly logPath: string;
}

/** `devmapper snapshotter serve` on a fresh pool in `home`; ready when it prints "listening on". */
async function startServer(home: string, address: string, logPath: string): Promise<Server> {
  const log = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      BIN,
      [
        'snapshotter',
        'serve',
        '--home',
        home,
        '--address',
        address,
        '--storage-opt',
        'dm.loopdatasize=2G',
        '--storage-opt',
        'dm.loopmetadatasize=128M',
        '--storage-opt',
        'dm.basesize=512M',
      ],
      { stdio: ['ignore', log, log] },
    );
  } finally {
    closeSync(log);
  }
  const server = { child, exited: exitOf(child), logPath };
  const deadline = Date.now() + 90_000;
  while (!readFileSync(logPath, 'utf8').includes(`listening on ${address}`)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`snapshotter serve exited (${child.exitCode ?? child.signalCode}):\n${readFileSync(logPath, 'utf8')}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`snapshotter serve not ready in 90 s:\n${readFileSync(logPath, 'utf8')}`);
    }
    await sleep(100);
  }
  return server;
}

async function stopServer(server: Server): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 60_000);
  try {
    return await server.exited;
  } finally {
    clearTimeout(timer);
  }
}

describe('containerd with `devmapper snapshotter serve` as a proxy snapshotter', () => {
  it('imports, lists, inspects, views, mounts and removes the image through the proxy', { timeout: CTR_TEST_TIMEOUT_MS }, async () => {
    const dir = join(work, 'proxy');
    mkdirSync(dir, { recursive: true });
    const home = join(dir, 'home');
    const address = join(dir, 'snapshotter.sock');
    const serverLog = join(dir, 'serve.log');
    const before = await kernelObjects();
    let server: Server | undefined;
    let cd: Containerd | undefined;
    try {
      server = await startServer(home, address, serverLog);
      cd = await Containerd.start(join(dir, 'containerd'), { proxySnapshotters: { [SNAPSHOTTER]: address } });

      const plugins = await cd.ctrOk(['plugins', 'ls']);
      expect(plugins).toMatch(new RegExp(`^io\\.containerd\\.snapshotter\\.v1\\s+${SNAPSHOTTER}\\s+\\S+\\s+ok\\s*$`, 'm'));

      await importImage(cd, SNAPSHOTTER);
      await expectChain(cd, SNAPSHOTTER);

      // Each committed layer's info: its name and parent, and kind Committed; the label containerd
      // forwards to the snapshotter (prefix containerd.io/snapshot/) set on the top one comes back.
      const top = image.chainIds.at(-1) ?? '';
      await cd.ctrOk(['snapshots', '--snapshotter', SNAPSHOTTER, 'label', top, 'containerd.io/snapshot/dmtest=top']);
      for (const [i, key] of image.chainIds.entries()) {
        const info = JSON.parse(await cd.ctrOk(['snapshots', '--snapshotter', SNAPSHOTTER, 'info', key])) as {
          Name: string;
          Parent?: string;
          Kind: string;
          Labels?: Record<string, string>;
        };
        expect({ name: info.Name, parent: info.Parent ?? '', kind: info.Kind }).toEqual({
          name: key,
          parent: i === 0 ? '' : image.chainIds[i - 1],
          kind: 'Committed',
        });
        if (key === top) expect(info.Labels?.['containerd.io/snapshot/dmtest']).toBe('top');
      }

      // The server's own records: one committed snapshot per layer, named by containerd's
      // metadata layer `<namespace>/<id>/<chain id>`, parents chained, the forwarded label kept.
      const listed = await listSnapshots(address);
      const byChain = image.chainIds.map((id) => listed.find((s) => s.name.endsWith(`/${id}`)));
      expect(listed).toHaveLength(image.chainIds.length);
      for (const [i, s] of byChain.entries()) {
        expect(s?.kind).toBe('COMMITTED');
        expect(s?.parent).toBe(i === 0 ? '' : byChain[i - 1]?.name);
      }
      expect(byChain.at(-1)?.labels['containerd.io/snapshot/dmtest']).toBe('top');

      const mounts = await checkView(cd, SNAPSHOTTER, 'ext4');
      expect(mounts[0]?.source).toMatch(/^\/dev\/mapper\//);

      await removeAll(cd, SNAPSHOTTER);
      expect(await serverListAfterCollection(address)).toEqual([]);
    } catch (e) {
      if (cd !== undefined) console.error(`--- containerd log (tail)\n${cd.log(200)}`);
      try {
        console.error(`--- snapshotter serve log\n${readFileSync(serverLog, 'utf8')}`);
      } catch {}
      throw e;
    } finally {
      // Everything is stopped and removed before anything is asserted, so a failed check leaves nothing behind.
      const cdEnd = cd === undefined ? undefined : await cd.stop();
      cd?.remove();
      const serverEnd = server === undefined ? undefined : await stopServer(server);
      const shutdown = await run(BIN, ['pool', 'shutdown', '--home', home]);
      const after = await kernelObjects();
      rmSync(dir, { recursive: true, force: true });
      if (cdEnd !== undefined) expect(cdEnd).toEqual({ code: 0, signal: null });
      if (serverEnd !== undefined) expect(serverEnd).toEqual({ code: 0, signal: null });
      if (server !== undefined) expect({ status: shutdown.status, stderr: shutdown.stderr }).toEqual({ status: 0, stderr: '' });
      expect(after).toEqual(before);
    }
  });
});
