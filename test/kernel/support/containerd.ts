// A real containerd (Debian's 1.6 build; guest-run puts it and ctr on PATH when the host lacks
// them) run by a kernel test: its own config, root, state and socket under one temp folder, the
// CRI plugin off, proxy snapshotters by name. Started as a child, stopped with SIGTERM; its log
// goes to a file that a failing test prints.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly status: number | null;
}

/** Runs a program to its end without blocking the event loop; never throws for a non-zero exit. */
export function run(cmd: string, args: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        if (err.killed) resolve({ stdout, stderr: `${stderr}\n${cmd} killed after ${timeoutMs} ms`, status: null });
        else reject(err);
        return;
      }
      resolve({ stdout, stderr, status: err === null ? 0 : (err.code as number) });
    });
  });
}

/** Runs a program and returns its stdout; a non-zero exit throws with the command line and stderr. */
export async function runOk(cmd: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** A child's exit, as a promise made when it starts (so an early exit is not missed). */
export function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export interface ContainerdOptions {
  /** Proxy snapshotters: name in containerd's config -> the unix socket they serve on. */
  readonly proxySnapshotters?: Readonly<Record<string, string>>;
  /** How long to wait for containerd to answer (UML is slow to start a Go binary). */
  readonly readyTimeoutMs?: number;
}

/** containerd 1.6's config: everything under `dir`, the CRI plugin (needs a CNI set-up) disabled. */
export function containerdConfig(dir: string, proxies: Readonly<Record<string, string>>): string {
  const lines = [
    'version = 2',
    `root = ${JSON.stringify(join(dir, 'root'))}`,
    `state = ${JSON.stringify(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = ${JSON.stringify(join(dir, 'containerd.sock'))}`,
    '',
    // The opt plugin would make /opt/containerd, which is read-only in the guest.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(join(dir, 'opt'))}`,
  ];
  for (const [name, address] of Object.entries(proxies)) {
    lines.push('', `[proxy_plugins.${JSON.stringify(name)}]`, '  type = "snapshot"', `  address = ${JSON.stringify(address)}`);
  }
  return `${lines.join('\n')}\n`;
}

export class Containerd {
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly dir: string,
    readonly address: string,
    readonly logPath: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = exitOf(child);
  }

  /** Starts containerd with its state under `dir` (made here) and waits until ctr reaches it. */
  static async start(dir: string, opts: ContainerdOptions = {}): Promise<Containerd> {
    mkdirSync(dir, { recursive: true });
    const configPath = join(dir, 'config.toml');
    writeFileSync(configPath, containerdConfig(dir, opts.proxySnapshotters ?? {}));
    const logPath = join(dir, 'containerd.log');
    const log = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn('containerd', ['--config', configPath, '--log-level', 'debug'], { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    const c = new Containerd(dir, join(dir, 'containerd.sock'), logPath, child);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    try {
      await c.waitReady(opts.readyTimeoutMs ?? 60_000);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`containerd exited (${this.child.exitCode ?? this.child.signalCode}) before it was ready:\n${this.log()}`);
      }
      if (existsSync(this.address)) {
        const r = await this.ctr(['version']);
        if (r.status === 0) return;
        last = r.stderr;
      }
      await sleep(200);
    }
    throw new Error(`containerd did not answer on ${this.address} within ${timeoutMs} ms: ${last}\n${this.log()}`);
  }

  /** `ctr --address <ours> ARGS` (namespace "default"). */
  ctr(args: readonly string[], timeoutMs?: number): Promise<RunResult> {
    return run('ctr', ['--address', this.address, ...args], timeoutMs);
  }

  /** `ctr` that must succeed: its stdout, or an error with its stderr and containerd's log tail. */
  async ctrOk(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.ctr(args, timeoutMs);
    if (r.status !== 0) {
      throw new Error(`ctr ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}\n--- containerd log (tail)\n${this.log(60)}`);
    }
    return r.stdout;
  }

  /** containerd's log, or its last `lines` lines. */
  log(lines?: number): string {
    let text = '';
    try {
      text = readFileSync(this.logPath, 'utf8');
    } catch {
      return '(no containerd log)';
    }
    return lines === undefined ? text : text.split('\n').slice(-lines).join('\n');
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`; returns how it ended. */
  async stop(graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Removes the folder (root, state, log); after stop(). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One line of `ctr snapshots ls`: KEY PARENT KIND. */
export interface CtrSnapshot {
  readonly key: string;
  readonly parent: string;
  readonly kind: string;
}

export function parseSnapshotsLs(stdout: string): CtrSnapshot[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift();
  if (header === undefined || !/^KEY\s+PARENT\s+KIND\s*$/.test(header)) throw new Error(`unexpected ctr snapshots ls output:\n${stdout}`);
  return lines.map((l) => {
    const f = l.trim().split(/\s+/);
    // A snapshot without a parent has an empty PARENT column.
    if (f.length === 2) return { key: f[0] ?? '', parent: '', kind: f[1] ?? '' };
    if (f.length === 3) return { key: f[0] ?? '', parent: f[1] ?? '', kind: f[2] ?? '' };
    throw new Error(`unexpected ctr snapshots ls line: ${l}`);
  });
}

/** What `ctr snapshots mounts TARGET KEY` prints: one `mount -t TYPE SOURCE TARGET [-o OPTIONS]` per mount. */
export interface MountCommand {
  readonly type: string;
  readonly source: string;
  readonly target: string;
  readonly options: readonly string[];
}

export function parseMountCommands(stdout: string): MountCommand[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const m = /^mount -t (\S+) (\S+) (\S+)(?: -o (\S+))?$/.exec(l.trim());
      if (m === null) throw new Error(`unexpected ctr snapshots mounts line: ${l}`);
      return { type: m[1] ?? '', source: m[2] ?? '', target: m[3] ?? '', options: m[4] === undefined ? [] : m[4].split(',') };
    });
}
