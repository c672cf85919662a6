// The package as a user gets it: built and packed from a copy of the sources (the checkout's own
// dist/ is left alone), installed from the tarball into a scratch project without the network (the
// dependencies come from the npm cache that `npm ci` filled), imported, type-checked with the project's tsc,
// and the README's examples compiled against it (the ones that need no kernel also run).
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '../..');
const tsc = join(repo, 'node_modules/.bin/tsc');
const execFileAsync = promisify(execFile);

/**
 * Preloaded with --require: at exit, what the run loaded of koffi, gRPC and the CLI's second bundle
 * (devmapper-full.cjs), and whether node:net.
 */
const RECORD_LOADS = `'use strict';
const Module = require('node:module');
const { writeFileSync } = require('node:fs');
const packages = new Set();
const load = Module._load;
Module._load = function (request, ...rest) {
  const m = /^(koffi|@grpc\\/[^/]+)$|(devmapper-full\\.cjs)$/.exec(request);
  if (m) packages.add(m[1] ?? m[2]);
  return load.call(this, request, ...rest);
};
process.on('exit', () => {
  const net = process.moduleLoadList.includes('NativeModule net');
  writeFileSync(process.env.RECORD_LOADS_TO, JSON.stringify({ packages: [...packages], net }));
});
`;

interface PackResult {
  filename: string;
  files: { path: string }[];
}

function failure(cmd: string, args: string[], cwd: string, e: unknown): Error {
  const err = e as { stdout?: string; stderr?: string; message: string };
  return new Error(`${cmd} ${args.join(' ')} failed in ${cwd}: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
}

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw failure(cmd, args, cwd, e);
  }
}

/** As run(), without blocking: independent steps overlap (npm spends most of its time starting). */
async function runAsync(cmd: string, args: string[], cwd: string): Promise<string> {
  try {
    return (await execFileAsync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (e) {
    throw failure(cmd, args, cwd, e);
  }
}

async function pack(cwd: string, extra: string[]): Promise<PackResult> {
  const out = await runAsync('npm', ['pack', '--json', '--silent', ...extra], cwd);
  const parsed = JSON.parse(out.slice(out.indexOf('['))) as PackResult[];
  expect(parsed).toHaveLength(1);
  return parsed[0]!;
}

/** The README's ```ts blocks marked `<!-- example: kind -->`. */
function readmeExamples(kind: 'kernel' | 'pure'): string[] {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const re = new RegExp(`<!-- example: ${kind} -->\\n\`\`\`ts\\n([\\s\\S]*?)\`\`\``, 'g');
  return [...readme.matchAll(re)].map((m) => m[1]!);
}

// Run inside the scratch project: what each entry point holds, by name, as JSON.
const CHECK_EXPORTS = `
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as root from 'devmapper';
import * as compat from 'devmapper/compat';
import * as testing from 'devmapper/testing';
import * as structs from 'devmapper/structs';
import { DeviceMapper, DeviceSet, Driver } from 'devmapper';

// gRPC is loaded by devmapper/snapshotter only: the root leaves it out of the module cache.
const loadedGrpc = () => Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('@grpc/grpc-js')).length > 0;
const grpcAfterRoot = loadedGrpc();
const snapshotter = await import('devmapper/snapshotter');
const grpcAfterSnapshotter = loadedGrpc();

// libc.ts is not exported; reach it by its file to learn its names.
const dist = dirname(createRequire(import.meta.url).resolve('devmapper'));
const libc = await import(pathToFileURL(join(dist, 'ioctl/libc.js')).href);
const on = (names) => names.filter((n) => n in root);
let deepImport = 'imported';
try {
  await import('devmapper/dist/ioctl/libc.js');
} catch (e) {
  deepImport = e.code;
}
console.log(JSON.stringify({
  classes: [typeof DeviceMapper, typeof DeviceSet, typeof Driver],
  libcOnRoot: on(Object.keys(libc)),
  compatOnRoot: on(Object.keys(compat)),
  testingOnRoot: on(Object.keys(testing)),
  compatTask: typeof compat.Task,
  testingEncoder: typeof testing.encodeNameList,
  structsCodec: typeof structs.encodeDmIoctl,
  deepImport,
  grpcAfterRoot,
  grpcAfterSnapshotter,
  snapshotterFace: [typeof snapshotter.serve, typeof snapshotter.Snapshotter, typeof snapshotter.parseFilters],
  protoDir: snapshotter.protoDir().startsWith(join(dist, 'snapshotter', 'proto')),
}));
`;

// Compiled with the project's tsc against the installed declarations: a wrong name or type fails.
const API_TS = `
import {
  DeviceMapper,
  DeviceSet,
  Driver,
  DmError,
  deviceName,
  sectors,
  thinId,
  type Bytes,
  type DeviceInfo,
  type PoolOptionsInput,
  type Target,
} from 'devmapper';
import { Task, TaskType } from 'devmapper/compat';
import { encodeNameList } from 'devmapper/testing';
import { decodeNameList } from 'devmapper/structs';
import { serve, Snapshotter, type SnapshotServer, type SnapshotterApi } from 'devmapper/snapshotter';
import {
  // @ts-expect-error libc's constants stay inside the package
  O_RDWR,
} from 'devmapper';

export async function served(): Promise<SnapshotServer> {
  const api: SnapshotterApi = await Snapshotter.open('/nonexistent', ['dm.basesize=1G']);
  // @ts-expect-error the address is a socket path
  await serve(api, 17);
  return serve(api, '/run/devmapper.sock', { log: (line: string) => void line });
}

export async function typed(): Promise<DeviceInfo> {
  const dm: DeviceMapper = DeviceMapper.open({ udev: 'off' });
  // @ts-expect-error udev is 'auto' | 'on' | 'off'
  DeviceMapper.open({ udev: 'sometimes' });
  const table: Target[] = [{ type: 'zero', startSector: sectors(0), lengthSectors: sectors(8) }];
  // @ts-expect-error a bare bigint has no unit: sector counts are Sectors
  const unbranded: Target = { type: 'zero', startSector: 0n, lengthSectors: 8n };
  // @ts-expect-error bytes are not sectors
  const mixed: Target = { type: 'zero', startSector: sectors(0), lengthSectors: 4096n as Bytes };
  void unbranded;
  void mixed;
  const options: PoolOptionsInput = { baseSize: '1G' };
  const set: DeviceSet = await DeviceSet.open('/nonexistent', options);
  const driver: Driver = await Driver.init('/nonexistent', ['dm.basesize=1G']);
  const task: Task = new Task(TaskType.DeviceInfo);
  void [set, driver, task, O_RDWR, decodeNameList(encodeNameList([], { withTail: true }))];
  try {
    // @ts-expect-error a bare string is no DeviceName: names are checked once, by deviceName()
    await dm.create('x', { table });
    // @ts-expect-error a number is no ThinId
    const thin: Target = { type: 'thin', startSector: sectors(0), lengthSectors: sectors(8), poolDevice: '253:0', thinId: 1 };
    void thin;
    return await dm.create(deviceName('x'), { table: [...table, { type: 'thin', startSector: sectors(8), lengthSectors: sectors(8), poolDevice: '253:0', thinId: thinId(1) }] });
  } catch (e) {
    if (e instanceof DmError) throw new Error(e.code);
    throw e;
  }
}
`;

/**
 * A project that depends on the tarball, with a lockfile: the dependencies' entries are the
 * checkout's own (version and integrity), so `npm ci --offline` takes them from the cache without
 * asking the registry for their versions.
 */
function writeScratchProject(dir: string, tarball: string): void {
  const spec = `file:../${tarball}`;
  const manifest = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { devmapper: spec } },
    'node_modules/devmapper': {
      version: manifest['version'],
      resolved: spec,
      license: manifest['license'],
      dependencies: manifest['dependencies'],
      bin: manifest['bin'],
      engines: manifest['engines'],
    },
  };
  // Every package the checkout installs for its dependencies (not only for development).
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path !== '' && !(entry as { dev?: boolean }).dev) packages[path] = entry;
  }
  for (const dep of Object.keys(manifest['dependencies'] as object)) expect(packages[`node_modules/${dep}`], dep).toBeDefined();
  const app = { name: 'app', private: true, type: 'module', dependencies: { devmapper: spec } };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(app));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }));
}

let scratch: string;
let packed: PackResult;
let dryRun: PackResult;
let app: string;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'devmapper-pack-'));
  const pkg = join(scratch, 'pkg');
  for (const path of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json', 'bin', 'src', 'scripts/build']) {
    cpSync(join(repo, path), join(pkg, path), { recursive: true });
  }
  symlinkSync(join(repo, 'node_modules'), join(pkg, 'node_modules'));
  packed = await pack(pkg, ['--pack-destination', scratch]); // runs `prepare`: the build

  app = join(scratch, 'app');
  mkdirSync(app);
  writeScratchProject(app, packed.filename);
  writeFileSync(join(app, 'check-exports.mjs'), CHECK_EXPORTS);
  writeFileSync(join(app, 'api.ts'), API_TS);
  [dryRun] = await Promise.all([
    pack(pkg, ['--dry-run', '--ignore-scripts']),
    runAsync('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app),
  ]);
}, 120_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('holds what an installed package needs and nothing of the sources or the test corpus', () => {
    const paths = packed.files.map((f) => f.path);
    for (const needed of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/cli/devmapper.cjs',
      'dist/cli/devmapper-full.cjs',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/structs/index.d.ts',
      'dist/compat.d.ts',
      'dist/testing.d.ts',
      'dist/snapshotter/index.js',
      'dist/snapshotter/index.d.ts',
      'dist/snapshotter/proto/containerd/services/snapshots/v1/snapshots.proto',
      'dist/snapshotter/proto/containerd/types/mount.proto',
    ]) {
      expect(paths).toContain(needed);
    }
    const stray = paths.filter((p) => !/^dist\//.test(p) && !['package.json', 'README.md', 'LICENSE'].includes(p));
    expect(stray).toEqual([]);
    expect(paths.filter((p) => /golden|\.jsonl$|\.test\.|\.map$|\.ts$/.test(p) && !p.endsWith('.d.ts'))).toEqual([]);
    // The CLI runs from its bundle; tsc's per-module output of src/cli is not shipped.
    expect(
      paths.filter((p) => p.startsWith('dist/cli/') && !['dist/cli/devmapper.cjs', 'dist/cli/devmapper-full.cjs'].includes(p)),
    ).toEqual([]);
  });

  it('--dry-run lists the same files', () => {
    expect(dryRun.files.map((f) => f.path).sort()).toEqual(packed.files.map((f) => f.path).sort());
  });

  it('points every exports entry at a file it holds', () => {
    const manifest = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
    };
    const paths = new Set(packed.files.map((f) => f.path));
    const targets = Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
    expect(targets.length).toBeGreaterThan(4);
    for (const t of targets) expect(paths, t).toContain(t.replace(/^\.\//, ''));
  });
});

describe('the installed package', () => {
  it('has no sources beside dist/, and its CLI starts from the bundle', () => {
    const installed = join(app, 'node_modules/devmapper');
    expect(existsSync(join(installed, 'dist/index.js'))).toBe(true);
    expect(existsSync(join(installed, 'src'))).toBe(false);
    expect(run(join(app, 'node_modules/.bin/devmapper'), ['--help'], app)).toMatch(/usage/i);
    expect(run(join(app, 'node_modules/.bin/devmapper'), ['snapshotter', 'serve', '--help'], app)).toMatch(
      /^usage: devmapper snapshotter serve --home DIR --address SOCKET/,
    );
  }, 30_000);

  it('links the bundle itself as `devmapper`: an executable that loads koffi, gRPC and node:net only when a command needs them', () => {
    const bin = join(app, 'node_modules/.bin/devmapper');
    expect(realpathSync(bin)).toBe(realpathSync(join(app, 'node_modules/devmapper/dist/cli/devmapper.cjs')));
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(statSync(bin).mode & 0o111).not.toBe(0);
    // A preload that records which of those the run loaded (Module._load sees every require).
    const hook = join(app, 'record-loads.cjs');
    writeFileSync(hook, RECORD_LOADS);
    const loads = (args: string[]): { status: number | null; stdout: string; stderr: string; loaded: unknown } => {
      const out = join(app, `loads-${args.join('-')}.json`);
      const r = spawnSync(bin, args, {
        cwd: app,
        encoding: 'utf8',
        env: { ...process.env, NODE_OPTIONS: `--require=${hook}`, RECORD_LOADS_TO: out },
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr, loaded: JSON.parse(readFileSync(out, 'utf8')) };
    };
    const version = loads(['--version']);
    expect(version.stdout).toBe('devmapper 0.1.0\n');
    expect(version.loaded).toEqual({ packages: [], net: false });
    const help = loads(['dm', '--help']);
    expect(help.stdout).toMatch(/^usage: devmapper dm /);
    expect(help.loaded).toEqual({ packages: [], net: false });
    // This host may lack device-mapper: dm ls lists, or says why not on stderr; either way no stream.
    const ls = loads(['dm', 'ls']);
    expect([0, 1]).toContain(ls.status);
    if (ls.status === 1) expect(ls.stderr).toMatch(/^devmapper dm: E[A-Z]+: /);
    expect((ls.loaded as { net: boolean }).net).toBe(false);
    expect((ls.loaded as { packages: string[] }).packages).not.toContain('@grpc/grpc-js');
    expect((ls.loaded as { packages: string[] }).packages).not.toContain('devmapper-full.cjs');
    // The thin pool's commands run from the second bundle, still without koffi for their help.
    const pool = loads(['-v', 'help', 'pool', 'status']);
    expect(pool.stdout).toMatch(/^usage: devmapper pool status /);
    expect((pool.loaded as { packages: string[] }).packages).toEqual(['devmapper-full.cjs']);
  }, 30_000);

  it('stops quietly when the reader of its output has gone (EPIPE)', async () => {
    const child = spawn(join(app, 'node_modules/.bin/devmapper'), ['--help'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // closes the read end before the CLI has started
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
  }, 30_000);

  it('imports from the root and the subpaths, and keeps libc and the Task shim off the root', () => {
    const out = run('node', ['check-exports.mjs'], app);
    const report = JSON.parse(out) as Record<string, unknown>;
    expect(report).toEqual({
      classes: ['function', 'function', 'function'],
      libcOnRoot: [],
      compatOnRoot: [],
      testingOnRoot: [],
      compatTask: 'function',
      testingEncoder: 'function',
      structsCodec: 'function',
      deepImport: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      grpcAfterRoot: false,
      grpcAfterSnapshotter: true,
      snapshotterFace: ['function', 'function', 'function'],
      protoDir: true,
    });
  }, 30_000);

  it("type-checks a program against the package's declarations, and the README examples with it", () => {
    const kernel = readmeExamples('kernel');
    const pure = readmeExamples('pure');
    expect(kernel.length).toBeGreaterThanOrEqual(2);
    expect(pure.length).toBeGreaterThanOrEqual(1);
    for (const [i, code] of kernel.entries()) writeFileSync(join(app, `readme-kernel-${i}.ts`), code);
    for (const [i, code] of pure.entries()) writeFileSync(join(app, `readme-pure-${i}.ts`), code);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022'],
          strict: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: false,
          typeRoots: [join(repo, 'node_modules/@types')],
          types: ['node'],
          outDir: 'out',
        },
        include: ['*.ts'],
      }),
    );
    run(tsc, ['-p', 'tsconfig.json'], app);
    for (const i of pure.keys()) run('node', [join('out', `readme-pure-${i}.js`)], app);
  }, 60_000);
});
