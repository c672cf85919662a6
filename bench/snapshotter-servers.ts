// The three snapshots servers the snapshotter bench compares, each on its own unix socket: ours
// (`devmapper snapshotter serve`, a pool on loop files in its home), containerd's devmapper
// snapshotter on a pool the bench makes with losetup + dmsetup from loop files of the same sizes,
// and containerd's overlayfs snapshotter. Start, stop, and remove everything each one made.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bytes } from '../src/structs/units.js';
import { poolTable } from '../src/thin/pool-setup.js';
import { BUILD_DIR, PROJECT } from './run-process.js';

const MiB = 1024 * 1024;
/** Pool and base sizes, the same for ours and containerd's devmapper. */
export const POOL = { dataBytes: 2048 * MiB, metadataBytes: 128 * MiB, baseSize: '512M' } as const;
export const SERVER_BIN = join(BUILD_DIR, 'snapshotter-server');
export const CLIENT_BIN = join(BUILD_DIR, 'snapshotter-client');
const READY_MS = 120_000;

export type ServerName = 'ours' | 'containerd devmapper' | 'containerd overlayfs';

export interface Server {
  name: ServerName;
  socket: string;
  /** An empty folder the client mounts this server's snapshots on. */
  mnt: string;
  proc: ChildProcess;
  /** Removes what the server left in the kernel and on disk (after stop). */
  teardown(): void;
}

const run = (cmd: string, args: readonly string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DM_DISABLE_UDEV: '1' } }).trim();

function sparse(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

/** Spawns a server and resolves once it printed `listening on SOCKET` (rejects if it exits first). */
function startProcess(cmd: string, args: readonly string[], socket: string): Promise<ChildProcess> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DM_DISABLE_UDEV: '1' } });
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${cmd}: not ready after ${READY_MS} ms: ${stderr.trim()}`));
    }, READY_MS);
    proc.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes(`listening on ${socket}`)) {
        clearTimeout(timer);
        proc.stdout?.removeAllListeners('data');
        proc.stdout?.resume();
        resolve(proc);
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(' ')}: exited ${code ?? signal} before ready: ${stderr.trim()}`));
    });
  });
}

/** SIGTERM, then waits for the exit (SIGKILL after 60 s). */
export function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

function folders(work: string, tag: string): { home: string; socket: string; mnt: string } {
  const home = join(work, tag);
  const mnt = join(work, `${tag}-mnt`);
  mkdirSync(mnt, { recursive: true });
  return { home, socket: join(work, `${tag}.sock`), mnt };
}

export async function startOurs(work: string): Promise<Server> {
  const { home, socket, mnt } = folders(work, 'ours');
  const bin = join(PROJECT, 'bin', 'devmapper');
  const opts = [
    `dm.loopdatasize=${POOL.dataBytes / MiB}M`,
    `dm.loopmetadatasize=${POOL.metadataBytes / MiB}M`,
    `dm.basesize=${POOL.baseSize}`,
  ];
  const teardown = () => {
    if (existsSync(home)) run(bin, ['pool', 'shutdown', '--home', home]);
    rmSync(home, { recursive: true, force: true });
  };
  try {
    const proc = await startProcess(
      bin,
      ['snapshotter', 'serve', '--home', home, '--address', socket, ...opts.flatMap((o) => ['--storage-opt', o])],
      socket,
    );
    return { name: 'ours', socket, mnt, proc, teardown };
  } catch (err) {
    teardown();
    throw err;
  }
}

/** containerd's documented set-up: two loop files, losetup, `dmsetup create POOL --table thin-pool ...`. */
export async function startContainerdDevmapper(work: string): Promise<Server> {
  const { home, socket, mnt } = folders(work, 'containerd-devmapper');
  const pool = `bench-ctrd-pool-${process.pid}`;
  const files = join(work, 'containerd-devmapper-loops');
  mkdirSync(files, { recursive: true });
  sparse(join(files, 'data'), POOL.dataBytes);
  sparse(join(files, 'metadata'), POOL.metadataBytes);
  const loops: string[] = [];
  let poolMade = false;
  const teardown = () => {
    // containerd names its devices POOL-snap-ID and leaves committed ones deactivated, active ones
    // active: remove whatever of them is still there, then the pool, the loops, the files.
    const names = run('dmsetup', ['ls'])
      .split('\n')
      .map((l) => l.split(/\s+/)[0] ?? '')
      .filter((n) => n.startsWith(`${pool}-`));
    for (const n of names) run('dmsetup', ['remove', '--retry', n]);
    if (poolMade) run('dmsetup', ['remove', '--retry', pool]);
    for (const l of loops.splice(0)) run('losetup', ['-d', l]);
    rmSync(files, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  };
  try {
    loops.push(run('losetup', ['-f', '--show', join(files, 'data')]));
    loops.push(run('losetup', ['-f', '--show', join(files, 'metadata')]));
    const [data, meta] = loops as [string, string];
    // The same table as ours (block size, low water mark, features), from the same function.
    const t = poolTable(meta, data, bytes(POOL.dataBytes), bytes(64 * 1024));
    const table = [
      0,
      t.lengthSectors,
      'thin-pool',
      meta,
      data,
      t.dataBlockSizeSectors,
      t.lowWaterMarkBlocks,
      t.features.length,
      ...t.features,
    ];
    run('dmsetup', ['create', pool, '--table', table.join(' ')]);
    poolMade = true;
    const proc = await startProcess(
      SERVER_BIN,
      ['-kind', 'devmapper', '-root', home, '-pool', pool, '-base-size', `${POOL.baseSize}B`, '-address', socket],
      socket,
    );
    return { name: 'containerd devmapper', socket, mnt, proc, teardown };
  } catch (err) {
    teardown();
    throw err;
  }
}

export function overlayAvailable(): boolean {
  return /\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'));
}

export async function startContainerdOverlay(work: string): Promise<Server> {
  const { home, socket, mnt } = folders(work, 'containerd-overlayfs');
  const teardown = () => rmSync(home, { recursive: true, force: true });
  try {
    const proc = await startProcess(SERVER_BIN, ['-kind', 'overlayfs', '-root', home, '-address', socket], socket);
    return { name: 'containerd overlayfs', socket, mnt, proc, teardown };
  } catch (err) {
    teardown();
    throw err;
  }
}

/** Names of every dm device, and every attached loop device (a teardown must leave no new one). */
export function kernelObjects(): string[] {
  const dm = run('dmsetup', ['ls'])
    .split('\n')
    .map((l) => l.split(/\s+/)[0] ?? '')
    .filter((n) => n && n !== 'No');
  const loops = run('losetup', ['-n', '-O', 'NAME']).split('\n').filter(Boolean);
  return [...dm.map((n) => `dm ${n}`), ...loops.map((l) => `loop ${l.trim()}`)];
}
