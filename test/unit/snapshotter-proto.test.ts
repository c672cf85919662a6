// The service as loaded from src/snapshotter/proto: containerd's method paths and every message's
// field names, numbers and types (the wire contract a Go client of containerd 1.6 to 2.x speaks),
// bytes encoded by hand from that table, timestamps to the nanosecond, and errors as statuses.
import { status } from '@grpc/grpc-js';
import type { MessageTypeDefinition, MethodDefinition, PackageDefinition } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { statusOf } from '../../src/snapshotter/status.js';
import {
  kindOf,
  nsOf,
  SERVICE_NAME,
  snapshotsDefinition,
  timestampOf,
  type WireInfo,
  wireInfo,
  wireKind,
} from '../../src/snapshotter/wire.js';

const PKG = 'containerd.services.snapshots.v1';
const def: PackageDefinition = snapshotsDefinition();

interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface DescriptorProto {
  name: string;
  field: FieldDescriptor[];
  nestedType: DescriptorProto[];
  options: { mapEntry?: boolean } | null;
}

function message(name: string): MessageTypeDefinition<object, object> {
  const m = def[name] as MessageTypeDefinition<object, object> | undefined;
  expect(m, name).toBeDefined();
  return m!;
}

/** A type name as protobuf resolves it from inside `scope`: the innermost enclosing package that has it. */
function resolveType(scope: string, typeName: string): string {
  if (typeName.startsWith('.')) return typeName.slice(1);
  const parts = scope.split('.').slice(0, -1);
  for (let n = parts.length; n >= 0; n--) {
    const full = [...parts.slice(0, n), typeName].join('.');
    if (full in def) return full;
  }
  throw new Error(`${typeName} does not resolve from ${scope}`);
}

/** A field as `number name type`, maps as map<string,string>, repeated as T[]. */
function shape(full: string): string[] {
  const type = message(full).type as unknown as DescriptorProto;
  return type.field.map((f) => {
    let t: string;
    const entry = type.nestedType.find((n) => n.options?.mapEntry && f.typeName.endsWith(n.name));
    if (entry) {
      const [k, v] = entry.field;
      expect([k?.number, k?.type, v?.number, v?.type]).toEqual([1, 'TYPE_STRING', 2, 'TYPE_STRING']);
      return `${f.number} ${f.name} map<string,string>`;
    }
    if (f.type === 'TYPE_MESSAGE' || f.type === 'TYPE_ENUM') t = resolveType(full, f.typeName);
    else t = f.type.replace('TYPE_', '').toLowerCase();
    return `${f.number} ${f.name} ${t}${f.label === 'LABEL_REPEATED' ? '[]' : ''}`;
  });
}

const MOUNTS = ['1 mounts containerd.types.Mount[]'];
const KEY = ['1 snapshotter string', '2 key string'];
const CREATE = ['1 snapshotter string', '2 key string', '3 parent string', '4 labels map<string,string>'];

const FIELDS: Record<string, string[]> = {
  PrepareSnapshotRequest: CREATE,
  ViewSnapshotRequest: CREATE,
  PrepareSnapshotResponse: MOUNTS,
  ViewSnapshotResponse: MOUNTS,
  MountsResponse: MOUNTS,
  MountsRequest: KEY,
  RemoveSnapshotRequest: KEY,
  StatSnapshotRequest: KEY,
  UsageRequest: KEY,
  CommitSnapshotRequest: ['1 snapshotter string', '2 name string', '3 key string', '4 labels map<string,string>'],
  Info: [
    '1 name string',
    '2 parent string',
    '3 kind containerd.services.snapshots.v1.Kind',
    '4 created_at google.protobuf.Timestamp',
    '5 updated_at google.protobuf.Timestamp',
    '6 labels map<string,string>',
  ],
  StatSnapshotResponse: ['1 info containerd.services.snapshots.v1.Info'],
  UpdateSnapshotResponse: ['1 info containerd.services.snapshots.v1.Info'],
  UpdateSnapshotRequest: [
    '1 snapshotter string',
    '2 info containerd.services.snapshots.v1.Info',
    '3 update_mask google.protobuf.FieldMask',
  ],
  ListSnapshotsRequest: ['1 snapshotter string', '2 filters string[]'],
  ListSnapshotsResponse: ['1 info containerd.services.snapshots.v1.Info[]'],
  UsageResponse: ['1 size int64', '2 inodes int64'],
  CleanupRequest: ['1 snapshotter string'],
};

describe('the service', () => {
  const methods = def[SERVICE_NAME] as unknown as Record<string, MethodDefinition<object, object>>;
  const want: [string, string, string, boolean][] = [
    ['Prepare', 'PrepareSnapshotRequest', 'PrepareSnapshotResponse', false],
    ['View', 'ViewSnapshotRequest', 'ViewSnapshotResponse', false],
    ['Mounts', 'MountsRequest', 'MountsResponse', false],
    ['Commit', 'CommitSnapshotRequest', 'Empty', false],
    ['Remove', 'RemoveSnapshotRequest', 'Empty', false],
    ['Stat', 'StatSnapshotRequest', 'StatSnapshotResponse', false],
    ['Update', 'UpdateSnapshotRequest', 'UpdateSnapshotResponse', false],
    ['List', 'ListSnapshotsRequest', 'ListSnapshotsResponse', true],
    ['Usage', 'UsageRequest', 'UsageResponse', false],
    ['Cleanup', 'CleanupRequest', 'Empty', false],
  ];
  it('has exactly containerd.services.snapshots.v1.Snapshots and its ten methods', () => {
    expect(SERVICE_NAME).toBe(`${PKG}.Snapshots`);
    expect(Object.keys(methods).sort()).toEqual(want.map(([m]) => m).sort());
  });
  for (const [name, req, res, streaming] of want) {
    it(`${name}: /${PKG}.Snapshots/${name}, ${req} -> ${streaming ? 'stream ' : ''}${res}`, () => {
      const m = methods[name]!;
      expect(m.path).toBe(`/${PKG}.Snapshots/${name}`);
      expect(m.requestStream).toBe(false);
      expect(m.responseStream).toBe(streaming);
      expect((m.requestType.type as unknown as DescriptorProto).name).toBe(req);
      expect((m.responseType.type as unknown as DescriptorProto).name).toBe(res);
    });
  }
  it('takes Empty from google.protobuf', () => {
    expect(shape('google.protobuf.Empty')).toEqual([]);
    expect(shape('google.protobuf.FieldMask')).toEqual(['1 paths string[]']);
    expect(shape('google.protobuf.Timestamp')).toEqual(['1 seconds int64', '2 nanos int32']);
  });
});

describe('the messages', () => {
  for (const [name, fields] of Object.entries(FIELDS)) {
    it(name, () => {
      expect(shape(`${PKG}.${name}`)).toEqual(fields);
    });
  }
  it('every message of the package is in the table', () => {
    const declared = Object.keys(def)
      .filter(
        (k) =>
          k.startsWith(`${PKG}.`) &&
          'type' in (def[k] as object) &&
          (def[k] as MessageTypeDefinition<object, object>).format === 'Protocol Buffer 3 DescriptorProto',
      )
      .map((k) => k.slice(PKG.length + 1))
      .sort();
    expect(declared).toEqual(Object.keys(FIELDS).sort());
  });
  it('containerd.types.Mount in its own package', () => {
    expect(shape('containerd.types.Mount')).toEqual(['1 type string', '2 source string', '3 target string', '4 options string[]']);
  });
  it('Kind: UNKNOWN 0, VIEW 1, ACTIVE 2, COMMITTED 3', () => {
    const e = def[`${PKG}.Kind`] as unknown as { type: { value: { name: string; number: number }[] } };
    expect(e.type.value.map((v) => [v.name, v.number])).toEqual([
      ['UNKNOWN', 0],
      ['VIEW', 1],
      ['ACTIVE', 2],
      ['COMMITTED', 3],
    ]);
  });
});

describe('bytes on the wire, encoded by hand from the field table', () => {
  const methods = def[SERVICE_NAME] as unknown as Record<string, MethodDefinition<object, object>>;
  const hex = (b: Buffer) => b.toString('hex');
  it('CommitSnapshotRequest', () => {
    const b = methods['Commit']!.requestSerialize({ snapshotter: 's', name: 'n', key: 'k', labels: { a: 'b' } });
    // 1:"s" 2:"n" 3:"k" 4:{1:"a" 2:"b"}
    expect(hex(b)).toBe('0a0173' + '12016e' + '1a016b' + '2206' + '0a0161' + '120162');
  });
  it('StatSnapshotResponse with an Info', () => {
    const b = methods['Stat']!.responseSerialize({
      info: {
        name: 'n',
        parent: 'p',
        kind: 'COMMITTED',
        created_at: { seconds: '1', nanos: 2 },
        updated_at: { seconds: '3', nanos: 0 },
        labels: {},
      },
    });
    // info(1) { name(1) "n", parent(2) "p", kind(3) 3, created_at(4) {1:1 2:2}, updated_at(5) {1:3 2:0} }
    // (protobufjs writes a zero it was given; a Go decoder reads it as the default it is)
    const info = '0a016e' + '120170' + '1803' + '2204' + '0801' + '1002' + '2a04' + '0803' + '1000';
    expect(hex(b)).toBe(`0a${(info.length / 2).toString(16).padStart(2, '0')}${info}`);
  });
  it('UsageResponse: int64 past 2^53 exactly, as decimal strings both ways', () => {
    const u = methods['Usage']!;
    const b = u.responseSerialize({ size: '9007199254740993', inodes: '7' });
    expect(u.responseDeserialize(b)).toEqual({ size: '9007199254740993', inodes: '7' });
  });
  it('a Go client decodes an empty label map and unset messages as defaults', () => {
    const s = methods['Update']!;
    expect(s.requestDeserialize(Buffer.alloc(0))).toEqual({ snapshotter: '', info: null, update_mask: null });
    const mount = methods['Mounts']!.responseDeserialize(Buffer.from('0a090a0465787434120178', 'hex'));
    expect(mount).toEqual({ mounts: [{ type: 'ext4', source: 'x', target: '', options: [] }] });
  });
});

describe('timestamps', () => {
  const cases: [bigint, string, number][] = [
    [0n, '0', 0],
    [1_700_000_000_123_456_789n, '1700000000', 123_456_789],
    [999_999_999n, '0', 999_999_999],
    [1_000_000_000n, '1', 0],
    [-1n, '-1', 999_999_999],
    [-1_000_000_000n, '-1', 0],
    [-1_500_000_000n, '-2', 500_000_000],
  ];
  for (const [ns, seconds, nanos] of cases) {
    it(`${ns} ns = ${seconds} s + ${nanos} ns, and back`, () => {
      expect(timestampOf(ns)).toEqual({ seconds, nanos });
      expect(nsOf(timestampOf(ns))).toBe(ns);
    });
  }
  it('an absent timestamp is 0; numbers are taken as well as strings', () => {
    expect(nsOf(null)).toBe(0n);
    expect(nsOf({ seconds: 5, nanos: 7 })).toBe(5_000_000_007n);
  });
  it('survives the wire to the nanosecond', () => {
    const s = (def[SERVICE_NAME] as unknown as Record<string, MethodDefinition<object, { info: WireInfo }>>)['Stat']!;
    const ns = 1_764_633_600_000_000_001n;
    const info = wireInfo({ name: 'n', parent: '', kind: 'active', labels: {}, created: ns, updated: ns + 1n });
    const back = s.responseDeserialize(s.responseSerialize({ info }));
    expect(nsOf(back.info.created_at)).toBe(ns);
  });
});

describe('kinds', () => {
  it('view, active, committed by their proto names; UNKNOWN has none', () => {
    expect([wireKind('view'), wireKind('active'), wireKind('committed')]).toEqual(['VIEW', 'ACTIVE', 'COMMITTED']);
    expect([kindOf('VIEW'), kindOf('ACTIVE'), kindOf('COMMITTED'), kindOf('UNKNOWN')]).toEqual(['view', 'active', 'committed', undefined]);
  });
});

describe('errors as statuses', () => {
  it('a SnapshotError answers its own code and message', () => {
    const want: [ConstructorParameters<typeof SnapshotError>[0], number][] = [
      ['AlreadyExists', 6],
      ['NotFound', 5],
      ['InvalidArgument', 3],
      ['FailedPrecondition', 9],
      ['Unimplemented', 12],
    ];
    for (const [code, n] of want) expect(statusOf(new SnapshotError(code, `why ${code}`))).toEqual({ code: n, details: `why ${code}` });
  });
  it('an errno answers the code containerd gives that condition', () => {
    const errno = (code: string) => Object.assign(new Error(`${code}: something`), { code });
    expect(statusOf(errno('EBUSY'))).toEqual({ code: status.FAILED_PRECONDITION, details: 'EBUSY: something' });
    expect(statusOf(errno('ENOENT')).code).toBe(status.NOT_FOUND);
    expect(statusOf(errno('EEXIST')).code).toBe(status.ALREADY_EXISTS);
    expect(statusOf(errno('EINVAL')).code).toBe(status.INVALID_ARGUMENT);
    expect(statusOf(errno('ENOSPC'))).toEqual({ code: status.UNKNOWN, details: 'ENOSPC: something' });
  });
  it('anything else is Unknown with its message', () => {
    expect(statusOf(new Error('boom'))).toEqual({ code: 2, details: 'boom' });
    expect(statusOf('a string')).toEqual({ code: 2, details: 'a string' });
    expect(statusOf(Object.assign(new Error('numeric'), { code: 5 }))).toEqual({ code: 2, details: 'numeric' });
  });
});
