// A grpc-js client of containerd's snapshots service, built from the .proto the server loads: the
// one the tests use to call `devmapper snapshotter serve` (and the in-process server) directly.
import * as grpc from '@grpc/grpc-js';
import { SERVICE_NAME, snapshotsDefinition, type WireInfo } from '../../src/snapshotter/wire.js';

type Unary = (req: object, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;
export type SnapshotsClient = grpc.Client & Record<string, Unary> & { List(req: object): grpc.ClientReadableStream<{ info: WireInfo[] }> };

/** A client of the server listening on the unix socket `path` (connects on the first call). */
export function snapshotsClient(path: string): SnapshotsClient {
  const pkg = grpc.loadPackageDefinition(snapshotsDefinition());
  const Ctor = SERVICE_NAME.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as grpc.ServiceClientConstructor;
  return new Ctor(`unix:${path}`, grpc.credentials.createInsecure()) as unknown as SnapshotsClient;
}

/** One unary call, `snapshotter` filled in as containerd's proxy does. */
export function call<T>(c: SnapshotsClient, method: string, req: object): Promise<T> {
  return new Promise((done, failed) => {
    c[method]!.call(c, { snapshotter: 'devmapper', ...req }, (err, res) => (err ? failed(err) : done(res as T)));
  });
}

/** List, as the server streams it: one array per message. */
export function listBatches(c: SnapshotsClient, filters: string[] = []): Promise<WireInfo[][]> {
  return new Promise((done, failed) => {
    const batches: WireInfo[][] = [];
    const s = c.List({ snapshotter: 'devmapper', filters });
    s.on('data', (r: { info: WireInfo[] }) => batches.push(r.info));
    s.on('error', failed);
    s.on('end', () => done(batches));
  });
}

/** Every snapshot the server lists for `filters`, all messages joined. */
export async function list(c: SnapshotsClient, filters: string[] = []): Promise<WireInfo[]> {
  return (await listBatches(c, filters)).flat();
}

/** Every snapshot the server at `socket` lists, through a client opened and closed for it. */
export async function listSnapshots(socket: string): Promise<WireInfo[]> {
  const c = snapshotsClient(socket);
  try {
    return await list(c);
  } finally {
    c.close();
  }
}

/** The status code and details a call failed with; throws if it succeeded. */
export async function refusal(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    return { code: err.code, details: err.details };
  }
  throw new Error('the call succeeded');
}
