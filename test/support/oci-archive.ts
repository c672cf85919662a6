// An OCI image archive built from a typed description of its layers, as `ctr images import` reads
// it: an outer tar holding oci-layout, index.json and blobs/sha256/<hex> (manifest, config, one
// gzipped tar per layer). Tars are POSIX ustar written here; gzip is node:zlib, digests node:crypto.
// The expected tree after unpacking (whiteouts and opaque dirs applied) comes from the same
// description, so a test compares a mounted rootfs with what the layers say.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

/** One entry of a layer. Paths are relative ("etc/passwd"), without a leading "/" or "./". */
export type LayerEntry =
  | { kind: 'dir'; path: string; mode: number }
  | { kind: 'file'; path: string; content: string | Uint8Array; mode: number }
  | { kind: 'symlink'; path: string; target: string }
  /** Deletes `path` of the layers below (written as `<dir>/.wh.<name>`). */
  | { kind: 'whiteout'; path: string }
  /** Hides every lower entry under the directory `path` (written as `<path>/.wh..wh..opq`). */
  | { kind: 'opaque'; path: string };

export interface LayerSpec {
  readonly entries: readonly LayerEntry[];
}

export interface BuiltLayer {
  /** The uncompressed tar, its sha256 (the config's diff_id) and the gzipped blob's sha256. */
  readonly tar: Buffer;
  readonly blob: Buffer;
  readonly diffId: string;
  readonly digest: string;
}

export interface OciArchive {
  /** The outer tar, as `ctr images import` takes it. */
  readonly archive: Buffer;
  readonly layers: readonly BuiltLayer[];
  readonly config: { readonly digest: string; readonly json: Buffer };
  readonly manifest: { readonly digest: string; readonly json: Buffer };
  readonly index: Buffer;
  /** The snapshot names containerd gives the unpacked layers: `sha256:<chain id>`, lowest first. */
  readonly chainIds: readonly string[];
  /** The image's name in index.json (`org.opencontainers.image.ref.name`). */
  readonly refName: string;
}

/** Every header of these archives carries this mtime (seconds), so a build is byte-for-byte repeatable. */
export const LAYER_MTIME = 1_700_000_000;

export const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

// ------------------------------------------------------------------ ustar

/** ustar typeflag values (POSIX pax, "ustar Interchange Format"). */
export const TAR_TYPE = { file: '0', symlink: '2', dir: '5' } as const;
export type TarType = (typeof TAR_TYPE)[keyof typeof TAR_TYPE];

export interface TarEntry {
  readonly name: string;
  readonly type: TarType;
  readonly mode: number;
  readonly data?: Uint8Array;
  readonly linkname?: string;
  readonly mtime?: number;
  readonly uid?: number;
  readonly gid?: number;
}

const BLOCK = 512;
const NAME_LEN = 100;
const PREFIX_LEN = 155;

// Field offsets and lengths of the ustar header.
const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

function putString(h: Buffer, [off, len]: readonly [number, number], s: string): void {
  const b = Buffer.from(s, 'utf8');
  if (b.length > len) throw new RangeError(`tar: "${s}" does not fit in ${len} bytes`);
  b.copy(h, off);
}

/** An octal number, zero-padded to len-1 digits and NUL-terminated. */
function putOctal(h: Buffer, field: readonly [number, number], n: number): void {
  const digits = field[1] - 1;
  const s = n.toString(8);
  if (!Number.isSafeInteger(n) || n < 0 || s.length > digits) throw new RangeError(`tar: ${n} does not fit in ${digits} octal digits`);
  putString(h, field, `${s.padStart(digits, '0')}\0`);
}

/** Splits a long name at a "/" into ustar's prefix and name fields. */
function splitName(name: string): { prefix: string; name: string } {
  if (Buffer.byteLength(name) <= NAME_LEN) return { prefix: '', name };
  for (let i = name.lastIndexOf('/'); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= PREFIX_LEN && Buffer.byteLength(rest) <= NAME_LEN && rest !== '') return { prefix, name: rest };
  }
  throw new RangeError(`tar: "${name}" is too long for a ustar header`);
}

/** The 512-byte ustar header of one entry. */
export function tarHeader(e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const { prefix, name } = splitName(e.name);
  putString(h, FIELD.name, name);
  putOctal(h, FIELD.mode, e.mode & 0o7777);
  putOctal(h, FIELD.uid, e.uid ?? 0);
  putOctal(h, FIELD.gid, e.gid ?? 0);
  putOctal(h, FIELD.size, size);
  putOctal(h, FIELD.mtime, e.mtime ?? LAYER_MTIME);
  putString(h, FIELD.typeflag, e.type);
  putString(h, FIELD.linkname, e.linkname ?? '');
  putString(h, FIELD.magic, 'ustar\0');
  putString(h, FIELD.version, '00');
  putString(h, FIELD.uname, 'root');
  putString(h, FIELD.gname, 'root');
  putString(h, FIELD.prefix, prefix);
  // The checksum is the byte sum of the header with its own field read as eight spaces,
  // written as six octal digits, NUL, space.
  h.fill(0x20, FIELD.chksum[0], FIELD.chksum[0] + FIELD.chksum[1]);
  let sum = 0;
  for (const byte of h) sum += byte;
  putString(h, FIELD.chksum, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** A ustar archive: each header, its data padded to 512 bytes, then two zero blocks. */
export function tarArchive(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === TAR_TYPE.file ? Buffer.from(e.data ?? new Uint8Array()) : Buffer.alloc(0);
    parts.push(tarHeader(e, data.length), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

// ------------------------------------------------------------------ layers

function checkPath(path: string): void {
  if (
    path === '' ||
    path.startsWith('/') ||
    path.startsWith('./') ||
    path.endsWith('/') ||
    path.split('/').some((c) => c === '' || c === '.' || c === '..')
  ) {
    throw new RangeError(`layer path "${path}" must be relative, without "." or ".." components`);
  }
}

function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function tarEntryOf(e: LayerEntry): TarEntry {
  checkPath(e.path);
  switch (e.kind) {
    case 'dir':
      return { name: `${e.path}/`, type: TAR_TYPE.dir, mode: e.mode };
    case 'file':
      return { name: e.path, type: TAR_TYPE.file, mode: e.mode, data: typeof e.content === 'string' ? Buffer.from(e.content) : e.content };
    case 'symlink':
      return { name: e.path, type: TAR_TYPE.symlink, mode: 0o777, linkname: e.target };
    case 'whiteout':
      return { name: join(dirOf(e.path), `${WHITEOUT_PREFIX}${baseOf(e.path)}`), type: TAR_TYPE.file, mode: 0o644 };
    case 'opaque':
      return { name: join(e.path, OPAQUE_WHITEOUT), type: TAR_TYPE.file, mode: 0o644 };
  }
}

/** One layer's tar entries, in the order given (a directory's own entry carries a trailing "/"). */
export function layerTarEntries(layer: LayerSpec): TarEntry[] {
  return layer.entries.map(tarEntryOf);
}

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function buildLayer(layer: LayerSpec): BuiltLayer {
  const tar = tarArchive(layerTarEntries(layer));
  // mtime 0 in the gzip header keeps the blob (and its digest) the same from run to run.
  const blob = gzipSync(tar, { level: 9 });
  return { tar, blob, diffId: sha256(tar), digest: sha256(blob) };
}

/** containerd's chain ids: the first layer's diff_id, then sha256("<chain below> <diff_id>"). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const below = out.at(-1);
    out.push(below === undefined ? d : sha256(Buffer.from(`${below} ${d}`)));
  }
  return out;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function blobName(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** The archive of a linux/amd64 image with these layers (lowest first), named `refName` in index.json. */
export function buildOciArchive(layers: readonly LayerSpec[], refName = 'latest'): OciArchive {
  if (layers.length === 0) throw new RangeError('an image needs at least one layer');
  const built = layers.map(buildLayer);
  const configJson = json({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map((_, i) => ({ created_by: `layer ${i}` })),
  });
  const config = { digest: sha256(configJson), json: configJson };
  const manifestJson = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: configJson.length },
    layers: built.map((l) => ({ mediaType: MEDIA_TYPE.layerGzip, digest: l.digest, size: l.blob.length })),
  });
  const manifest = { digest: sha256(manifestJson), json: manifestJson };
  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: [
      {
        mediaType: MEDIA_TYPE.manifest,
        digest: manifest.digest,
        size: manifestJson.length,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: { 'org.opencontainers.image.ref.name': refName },
      },
    ],
  });
  const blobs = new Map<string, Buffer>([
    [config.digest, configJson],
    [manifest.digest, manifestJson],
  ]);
  for (const l of built) blobs.set(l.digest, l.blob);
  const entries: TarEntry[] = [
    { name: 'oci-layout', type: TAR_TYPE.file, mode: 0o644, data: json({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', type: TAR_TYPE.file, mode: 0o644, data: index },
    { name: 'blobs/', type: TAR_TYPE.dir, mode: 0o755 },
    { name: 'blobs/sha256/', type: TAR_TYPE.dir, mode: 0o755 },
    ...[...blobs].map(([digest, data]): TarEntry => ({ name: blobName(digest), type: TAR_TYPE.file, mode: 0o644, data })),
  ];
  return {
    archive: tarArchive(entries),
    layers: built,
    config,
    manifest,
    index,
    chainIds: chainIds(built.map((l) => l.diffId)),
    refName,
  };
}

// ------------------------------------------------------------------ the unpacked tree

/** What a path of the unpacked rootfs must be. */
export type TreeNode =
  | { kind: 'dir'; mode: number }
  | { kind: 'file'; mode: number; content: Buffer }
  | { kind: 'symlink'; target: string };

/**
 * The rootfs the layers make, as an overlay-style unpacker (containerd's archive.Apply) leaves it:
 * per layer, opaque dirs drop the lower entries below them, whiteouts drop their path and its
 * subtree, then entries are added, replacing what was there. Keys are relative paths; the root
 * itself is not listed. A parent must exist (from this or a lower layer) before its children.
 */
export function expectedTree(layers: readonly LayerSpec[]): Map<string, TreeNode> {
  const tree = new Map<string, TreeNode>();
  const dropUnder = (dir: string, keepDir: boolean): void => {
    for (const p of [...tree.keys()]) {
      if (p.startsWith(`${dir}/`) || (!keepDir && p === dir)) tree.delete(p);
    }
  };
  for (const layer of layers) {
    const lower = new Set(tree.keys());
    for (const e of layer.entries) {
      checkPath(e.path);
      if (e.kind === 'opaque') {
        for (const p of lower) if (p.startsWith(`${e.path}/`)) tree.delete(p);
      }
    }
    for (const e of layer.entries) {
      if (e.kind === 'whiteout') {
        if (!tree.has(e.path)) throw new RangeError(`whiteout of "${e.path}", which no lower layer has`);
        dropUnder(e.path, false);
      }
    }
    for (const e of layer.entries) {
      if (e.kind === 'whiteout' || e.kind === 'opaque') continue;
      const parent = dirOf(e.path);
      if (parent !== '' && tree.get(parent)?.kind !== 'dir') throw new RangeError(`"${e.path}" has no parent directory "${parent}"`);
      const old = tree.get(e.path);
      if (old !== undefined && !(old.kind === 'dir' && e.kind === 'dir')) dropUnder(e.path, false);
      switch (e.kind) {
        case 'dir':
          tree.set(e.path, { kind: 'dir', mode: e.mode & 0o7777 });
          break;
        case 'file':
          tree.set(e.path, {
            kind: 'file',
            mode: e.mode & 0o7777,
            content: Buffer.from(typeof e.content === 'string' ? Buffer.from(e.content) : e.content),
          });
          break;
        case 'symlink':
          tree.set(e.path, { kind: 'symlink', target: e.target });
          break;
      }
    }
  }
  return tree;
}
