// A direct client of `devmapper snapshotter serve`, beside containerd: the snapshots service's List,
// read from the same .proto the server loads, so a test sees the server's own records rather than
// containerd's metadata view of them.
import * as grpc from '@grpc/grpc-js';
import { SERVICE_NAME, snapshotsDefinition } from '../../../src/snapshotter/index.js';

/** The fields of containerd.services.snapshots.v1.Info this client reads (proto-loader: enums by name). */
export interface ListedSnapshot {
  readonly name: string;
  readonly parent: string;
  readonly kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  readonly labels: Readonly<Record<string, string>>;
}

type ListClient = grpc.Client & { List(req: object): grpc.ClientReadableStream<{ info: ListedSnapshot[] }> };

/** Every snapshot the server at `socket` lists (List with no filter, all batches). */
export async function listSnapshots(socket: string): Promise<ListedSnapshot[]> {
  const pkg = grpc.loadPackageDefinition(snapshotsDefinition());
  const Ctor = SERVICE_NAME.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as grpc.ServiceClientConstructor;
  const client = new Ctor(`unix:${socket}`, grpc.credentials.createInsecure()) as unknown as ListClient;
  try {
    return await new Promise<ListedSnapshot[]>((resolve, reject) => {
      const out: ListedSnapshot[] = [];
      const stream = client.List({ snapshotter: 'devmapper', filters: [] });
      stream.on('data', (r: { info: ListedSnapshot[] }) => out.push(...r.info));
      stream.on('error', reject);
      stream.on('end', () => resolve(out));
    });
  } finally {
    client.close();
  }
}
