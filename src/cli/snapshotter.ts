// `devmapper snapshotter serve`: containerd's snapshots service on a unix socket, over the pool of a
// home folder (made on first use, as `pool init` makes it). SIGTERM or SIGINT stops it: no new
// calls, the ones in flight finish, the snapshotter closes, the socket goes, exit 0. The pool, its
// devices and the mounts containerd made stay up (`devmapper pool shutdown` takes them down).
import { runGroup, str, type Command, type Group, type Invocation, type OptionSpec } from './command.js';
import { homeArgs, POOL_HINTS, poolStep } from './pool.js';
import { resolveHome, STORAGE_OPTS_FILE, writeRecordedOpts } from './pool-home.js';
import { UsageError } from './usage.js';
import { writeErr } from './stdio.js';

const HINTS: Readonly<Record<string, string>> = {
  ...POOL_HINTS,
  PoolLockedError: 'another process has the pool of that home open: a snapshotter already serving it, or a pool command',
  EADDRINUSE: 'another server listens on that socket: stop it, or choose another --address',
};

const common: Readonly<Record<string, OptionSpec>> = {
  home: { type: 'string', arg: 'DIR', help: "the pool's folder (made with a pool on loop files when new)" },
  'storage-opt': {
    type: 'string',
    multiple: true,
    arg: 'dm.KEY=VALUE',
    help: `Docker's dm.* options as pool init takes them (docs/pool.md); recorded in DIR/${STORAGE_OPTS_FILE}`,
  },
};

/** SIGTERM and SIGINT, caught from the start: one that comes while the pool opens stops the server before it listens. */
function stopSignals(): { stopped: Promise<NodeJS.Signals>; dispose(): void } {
  let resolveStop!: (s: NodeJS.Signals) => void;
  const stopped = new Promise<NodeJS.Signals>((r) => {
    resolveStop = r;
  });
  let first: NodeJS.Signals | undefined;
  const on = (signal: NodeJS.Signals) => {
    if (first) {
      log(`${signal}: already stopping (after ${first}); waiting for the calls in flight`);
      return;
    }
    first = signal;
    resolveStop(signal);
  };
  process.on('SIGTERM', on);
  process.on('SIGINT', on);
  return {
    stopped,
    dispose: () => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
    },
  };
}

function log(line: string): void {
  writeErr(`devmapper snapshotter: ${line}\n`);
}

async function serveCommand(inv: Invocation): Promise<void> {
  const args = homeArgs(inv);
  if (!args.home) throw new UsageError('missing --home DIR');
  const address = str(inv.values, 'address');
  if (!address) throw new UsageError('missing --address SOCKET');
  const { home, opts } = resolveHome(args); // usage errors before anything is opened
  const signals = stopSignals();
  try {
    // Loaded here, so that the help and the other commands never load gRPC.
    const { Snapshotter, serve } = await import('../snapshotter/index.js');
    const api = await poolStep(() => Snapshotter.open(home, opts), HINTS);
    let server: Awaited<ReturnType<typeof serve>>;
    try {
      // Later pool commands on this home (status, shutdown) find the pool by these.
      writeRecordedOpts(home, opts);
      server = await poolStep(() => serve(api, address, { log }), HINTS);
    } catch (e) {
      await api.close();
      throw e;
    }
    inv.out(`listening on ${server.address}\n`);
    const signal = await signals.stopped;
    log(`${signal}: finishing the calls in flight`);
    await server.close();
  } finally {
    signals.dispose();
  }
}

const commands: Command[] = [
  {
    name: 'serve',
    summary: "serve containerd's snapshots API (a proxy snapshotter) on a unix socket, over the pool of DIR",
    usage: '--home DIR --address SOCKET [--storage-opt dm.KEY=VALUE]...',
    options: { address: { type: 'string', arg: 'SOCKET', help: 'the unix socket to listen on (a stale one is replaced)' } },
    positionals: { min: 0, max: 0 },
    details: [
      "Prints 'listening on SOCKET' once the socket accepts calls. SIGTERM or SIGINT: no new calls, the",
      'calls in flight finish, the socket is removed, exit 0; the pool and every mount stay up',
      "('devmapper pool shutdown --home DIR' takes them down). containerd's config.toml:",
      '  [proxy_plugins.dmthin]  type = "snapshot"  address = "SOCKET"   (not "devmapper": containerd has one built in;',
      '  docs/containerd.md)',
    ].join('\n'),
    run: serveCommand,
  },
];

export const group: Group = {
  name: 'snapshotter',
  summary: "containerd's snapshotter over the pool of a home folder (docs/containerd.md)",
  common,
  commands,
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
