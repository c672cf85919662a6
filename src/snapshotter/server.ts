// containerd's snapshots service (containerd.services.snapshots.v1.Snapshots) over a unix socket,
// each call handed to a SnapshotterApi. Requests are checked here, before the snapshotter sees them;
// failures answer the status containerd expects (status.ts). close() stops accepting, lets the calls
// in flight finish, then closes the snapshotter (which leaves the pool and its mounts up).
import { lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SnapshotError } from './errors.js';
import { parseFilters } from './filters.js';
import { statusOf } from './status.js';
import type { Mount, SnapshotterApi } from './types.js';
import { SERVICE_NAME, snapshotsDefinition, wireInfo, type WireInfo } from './wire.js';

/** How many Infos one ListSnapshotsResponse carries, as containerd's own service sends them. */
export const LIST_BATCH = 100;

/** sun_path of struct sockaddr_un holds 108 bytes, the terminating NUL included. */
export const UNIX_PATH_MAX = 108;

export interface ServeOptions {
  /** Where failures the snapshotter did not expect (answered Unknown) are reported; default: nowhere. */
  log?: (line: string) => void;
}

export interface SnapshotServer {
  /** The socket's absolute path. */
  readonly address: string;
  /** Stops accepting, waits for the calls in flight, closes the snapshotter, removes the socket. Idempotent. */
  close(): Promise<void>;
}

/** A socket path the server cannot take; `code` is the errno it amounts to. */
export class SocketAddressError extends Error {
  override readonly name = 'SocketAddressError';
  constructor(
    readonly code: 'EADDRINUSE' | 'EEXIST' | 'ENAMETOOLONG',
    readonly path: string,
    why: string,
  ) {
    super(`${code}: ${path}: ${why}`);
  }
}

// ---- requests --------------------------------------------------------------------------------------

type Labels = Record<string, string>;
interface KeyRequest {
  key: string;
}
interface CreateRequest extends KeyRequest {
  parent: string;
  labels: Labels;
}
interface CommitRequest extends KeyRequest {
  name: string;
  labels: Labels;
}
interface UpdateRequest {
  info: WireInfo | null;
  update_mask: { paths: string[] } | null;
}
interface ListRequest {
  filters: string[];
}

function requireName(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new SnapshotError('InvalidArgument', `${what} must not be empty`);
  return v;
}

function stringOf(what: string, v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new SnapshotError('InvalidArgument', `${what} must be a string`);
  return v;
}

function labelsOf(v: unknown): Labels {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new SnapshotError('InvalidArgument', 'labels must be a map of strings');
  const out: Labels = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new SnapshotError('InvalidArgument', `label ${JSON.stringify(k)} must be a string`);
    out[k] = x;
  }
  return out;
}

const mountsReply = (mounts: Mount[]) => ({ mounts: mounts.map((m) => ({ ...m, options: [...m.options] })) });

// ---- the service -----------------------------------------------------------------------------------

type Unary = (request: unknown) => Promise<object>;

function unaryHandlers(api: SnapshotterApi): Record<string, Unary> {
  return {
    Prepare: async (r) => {
      const q = r as CreateRequest;
      return mountsReply(await api.prepare(requireName('key', q.key), stringOf('parent', q.parent), labelsOf(q.labels)));
    },
    View: async (r) => {
      const q = r as CreateRequest;
      return mountsReply(await api.view(requireName('key', q.key), stringOf('parent', q.parent), labelsOf(q.labels)));
    },
    Mounts: async (r) => mountsReply(await api.mounts(requireName('key', (r as KeyRequest).key))),
    Commit: async (r) => {
      const q = r as CommitRequest;
      await api.commit(requireName('name', q.name), requireName('key', q.key), labelsOf(q.labels));
      return {};
    },
    Remove: async (r) => {
      await api.remove(requireName('key', (r as KeyRequest).key));
      return {};
    },
    Stat: async (r) => ({ info: wireInfo(await api.stat(requireName('key', (r as KeyRequest).key))) }),
    Update: async (r) => {
      const q = r as UpdateRequest;
      if (!q.info) throw new SnapshotError('InvalidArgument', 'update needs info');
      const info = { name: requireName('info.name', q.info.name), labels: labelsOf(q.info.labels) };
      const paths = (q.update_mask?.paths ?? []).map((p) => stringOf('update_mask path', p));
      return { info: wireInfo(await api.update(info, paths)) };
    },
    Usage: async (r) => {
      const u = await api.usage(requireName('key', (r as KeyRequest).key));
      return { size: u.size.toString(), inodes: u.inodes.toString() };
    },
    Cleanup: async () => {
      await api.cleanup();
      return {};
    },
  };
}

/** Waits until the stream takes more, when its buffer is full (a slow reader of a long list). */
function drained(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((done) => {
    const finish = () => {
      call.off('drain', finish);
      call.off('close', finish);
      done();
    };
    call.once('drain', finish);
    call.once('close', finish);
  });
}

function implementation(api: SnapshotterApi, track: <T>(p: Promise<T>) => Promise<T>, log: (line: string) => void) {
  const fail = (method: string, err: unknown): grpc.ServiceError => {
    const s = statusOf(err);
    if (s.code === grpc.status.UNKNOWN) log(`${method}: ${s.details}`);
    return Object.assign(new Error(s.details), { code: s.code, details: s.details, metadata: new grpc.Metadata() });
  };
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [method, fn] of Object.entries(unaryHandlers(api))) {
    impl[method] = ((call: grpc.ServerUnaryCall<unknown, object>, callback: grpc.sendUnaryData<object>) => {
      track(fn(call.request)).then(
        (reply) => callback(null, reply),
        (err: unknown) => callback(fail(method, err)),
      );
    }) as grpc.handleUnaryCall<unknown, object>;
  }
  impl['List'] = ((call: grpc.ServerWritableStream<ListRequest, object>) => {
    const run = async () => {
      const filters = (call.request.filters ?? []).map((f) => stringOf('filter', f));
      const match = parseFilters(filters);
      const infos = (await api.list()).filter(match);
      for (let i = 0; i < infos.length && !call.cancelled; i += LIST_BATCH) {
        if (!call.write({ info: infos.slice(i, i + LIST_BATCH).map(wireInfo) })) await drained(call);
      }
    };
    track(run()).then(
      () => call.end(),
      (err: unknown) => call.emit('error', fail('List', err)),
    );
  }) as grpc.handleServerStreamingCall<ListRequest, object>;
  return impl;
}

// ---- the socket ------------------------------------------------------------------------------------

/** Whether something accepts connections on the unix socket at `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((done, failed) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.destroy();
      done(true);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') done(false);
      else failed(err);
    });
  });
}

/** Makes `path` free for a new socket: a stale socket file (nobody listening) is removed; anything else is refused. */
async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) >= UNIX_PATH_MAX) {
    throw new SocketAddressError('ENAMETOOLONG', path, `a unix socket path holds at most ${UNIX_PATH_MAX - 1} bytes`);
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!isSocket) throw new SocketAddressError('EEXIST', path, 'exists and is not a socket; remove it or choose another --address');
  if (await listening(path)) throw new SocketAddressError('EADDRINUSE', path, 'another server accepts connections there');
  unlinkSync(path);
}

function bind(server: grpc.Server, path: string): Promise<void> {
  return new Promise((done, failed) => {
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? failed(err) : done()));
  });
}

/** Removes the socket this server made, unless something else took the path since. */
function removeSocket(path: string, ino: number): void {
  try {
    const st = lstatSync(path);
    if (st.isSocket() && st.ino === ino) unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Serves `api` on the unix socket at `address` (a path, or `unix:PATH`). Resolves once the socket
 * accepts connections. A stale socket file is replaced; a live one is refused (EADDRINUSE).
 */
export async function serve(api: SnapshotterApi, address: string, opts: ServeOptions = {}): Promise<SnapshotServer> {
  const path = resolve(address.replace(/^unix:(\/\/(?=\/))?/, ''));
  const log = opts.log ?? (() => undefined);
  await claimSocketPath(path);

  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    const forget = () => void inFlight.delete(p);
    p.then(forget, forget);
    return p;
  };

  const definition = snapshotsDefinition();
  const service = grpc.loadPackageDefinition(definition);
  const ctor = SERVICE_NAME.split('.').reduce<unknown>(
    (o, k) => (o as Record<string, unknown>)[k],
    service,
  ) as grpc.ServiceClientConstructor;
  const server = new grpc.Server();
  server.addService(ctor.service, implementation(api, track, log));
  await bind(server, path);
  const ino = lstatSync(path).ino;

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    await new Promise<void>((done) => server.tryShutdown(() => done()));
    // A call whose client went away still runs to its end before the snapshotter closes.
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    try {
      await api.close();
    } finally {
      removeSocket(path, ino);
    }
  };
  return {
    address: path,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
