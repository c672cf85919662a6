// The OCI archive builder checked against independent readers: GNU tar parses its ustar headers
// (and verifies their checksums), gunzip and sha256 of the extracted blobs give back the digests,
// diff_ids and chain ids the JSON documents name.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildOciArchive,
  chainIds,
  expectedTree,
  LAYER_MTIME,
  type LayerSpec,
  MEDIA_TYPE,
  TAR_TYPE,
  tarArchive,
  tarHeader,
} from '../support/oci-archive.js';

const dir = mkdtempSync(join(tmpdir(), 'oci-archive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tar(args: readonly string[]): string {
  const r = spawnSync('tar', args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } });
  if (r.error) throw r.error;
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

function hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
const LAYERS: readonly LayerSpec[] = [
  {
    entries: [
      { kind: 'dir', path: 'etc', mode: 0o755 },
      { kind: 'file', path: 'etc/hostname', content: 'lower\n', mode: 0o644 },
      { kind: 'file', path: 'etc/gone', content: 'deleted above\n', mode: 0o600 },
      { kind: 'dir', path: 'opq', mode: 0o750 },
      { kind: 'file', path: 'opq/old', content: 'hidden above\n', mode: 0o644 },
      { kind: 'dir', path: 'd'.repeat(60), mode: 0o755 },
      { kind: 'dir', path: longDir, mode: 0o755 },
      { kind: 'file', path: `${longDir}/${'f'.repeat(40)}`, content: 'long name\n', mode: 0o644 },
    ],
  },
  {
    entries: [
      { kind: 'file', path: 'etc/hostname', content: 'upper\n', mode: 0o640 },
      { kind: 'whiteout', path: 'etc/gone' },
      { kind: 'symlink', path: 'etc/link', target: '../opq/new' },
      { kind: 'opaque', path: 'opq' },
      { kind: 'file', path: 'opq/new', content: Buffer.alloc(1500, 0xa5), mode: 0o4755 },
    ],
  },
  { entries: [{ kind: 'dir', path: 'empty', mode: 0o1777 }] },
];

describe('tarHeader', () => {
  it('writes ustar fields and a checksum over the header with its own field as spaces', () => {
    const h = tarHeader({ name: 'a/b', type: TAR_TYPE.file, mode: 0o644 }, 5);
    expect(h.length).toBe(512);
    expect(h.subarray(0, 4).toString()).toBe('a/b\0');
    expect(h.subarray(100, 108).toString()).toBe('0000644\0');
    expect(h.subarray(124, 136).toString()).toBe('00000000005\0');
    expect(h.subarray(136, 148).toString()).toBe(`${LAYER_MTIME.toString(8)}\0`);
    expect(h.subarray(257, 265).toString()).toBe('ustar\x0000');
    const stored = Number.parseInt(h.subarray(148, 154).toString(), 8);
    expect(h.subarray(154, 156).toString()).toBe('\0 ');
    const blank = Buffer.from(h);
    blank.fill(0x20, 148, 156);
    expect(stored).toBe(blank.reduce((s, b) => s + b, 0));
  });

  it('splits a long name into prefix and name, and refuses one that cannot be split', () => {
    const name = `${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const h = tarHeader({ name, type: TAR_TYPE.file, mode: 0o644 }, 0);
    expect(h.subarray(0, 90).toString()).toBe('n'.repeat(90));
    expect(h.subarray(345, 465).toString()).toBe('p'.repeat(120));
    expect(() => tarHeader({ name: 'x'.repeat(101), type: TAR_TYPE.file, mode: 0 }, 0)).toThrow(RangeError);
    expect(() => tarHeader({ name: 'a', type: TAR_TYPE.file, mode: 0, uid: 0o10000000 }, 0)).toThrow(RangeError);
  });

  it('pads data to 512 bytes and ends with two zero blocks', () => {
    const t = tarArchive([{ name: 'f', type: TAR_TYPE.file, mode: 0o644, data: Buffer.from('abc') }]);
    expect(t.length).toBe(512 + 512 + 1024);
    expect(t.subarray(512, 515).toString()).toBe('abc');
    expect(t.subarray(515).every((b) => b === 0)).toBe(true);
  });
});

describe('buildOciArchive', () => {
  const image = buildOciArchive(LAYERS, 'v1');
  const path = join(dir, 'image.tar');
  writeFileSync(path, image.archive);

  it('is a tar GNU tar lists: oci-layout, index.json and one blob per manifest, config and layer', () => {
    const names = tar(['-tf', path]).trim().split('\n');
    const blobs = [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)].map(
      (d) => `blobs/sha256/${d.slice(7)}`,
    );
    expect(names.sort()).toEqual(['oci-layout', 'index.json', 'blobs/', 'blobs/sha256/', ...blobs].sort());
  });

  it('names every blob by the sha256 of its bytes, and the documents point at each other', () => {
    const out = join(dir, 'x');
    rmSync(out, { recursive: true, force: true });
    tar(['-x', '-C', dir, '--one-top-level=x', '-f', path]);
    const blobDir = join(out, 'blobs', 'sha256');
    for (const name of readdirSync(blobDir)) expect(hex(readFileSync(join(blobDir, name)))).toBe(name);
    expect(JSON.parse(readFileSync(join(out, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });

    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    expect(index.mediaType).toBe(MEDIA_TYPE.index);
    expect(index.manifests).toHaveLength(1);
    const ref = index.manifests[0];
    expect(ref.annotations['org.opencontainers.image.ref.name']).toBe('v1');
    const manifestBytes = readFileSync(join(blobDir, ref.digest.slice(7)));
    expect(ref.size).toBe(manifestBytes.length);

    const manifest = JSON.parse(manifestBytes.toString());
    expect(manifest.schemaVersion).toBe(2);
    const configBytes = readFileSync(join(blobDir, manifest.config.digest.slice(7)));
    expect(manifest.config.size).toBe(configBytes.length);
    const config = JSON.parse(configBytes.toString());
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } });

    expect(manifest.layers).toHaveLength(LAYERS.length);
    const diffIds: string[] = [];
    for (const l of manifest.layers) {
      expect(l.mediaType).toBe(MEDIA_TYPE.layerGzip);
      const blob = readFileSync(join(blobDir, l.digest.slice(7)));
      expect(l.size).toBe(blob.length);
      diffIds.push(`sha256:${hex(gunzipSync(blob))}`);
    }
    expect(config.rootfs.diff_ids).toEqual(diffIds);
    expect(image.chainIds).toEqual(chainIds(diffIds));
  });

  it('gives layer tars whose entries GNU tar reads back with their types, modes, sizes and link targets', () => {
    const listing = (i: number): string[] => {
      const p = join(dir, `layer${i}.tar.gz`);
      writeFileSync(p, image.layers[i]?.blob ?? Buffer.alloc(0));
      return tar(['--numeric-owner', '--full-time', '-tvzf', p])
        .trim()
        .split('\n')
        .map((line) => line.replace(/ +/g, ' '));
    };
    const when = new Date(LAYER_MTIME * 1000).toISOString().replace('T', ' ').replace('.000Z', '');
    expect(listing(0)).toEqual([
      `drwxr-xr-x 0/0 0 ${when} etc/`,
      `-rw-r--r-- 0/0 6 ${when} etc/hostname`,
      `-rw------- 0/0 14 ${when} etc/gone`,
      `drwxr-x--- 0/0 0 ${when} opq/`,
      `-rw-r--r-- 0/0 13 ${when} opq/old`,
      `drwxr-xr-x 0/0 0 ${when} ${'d'.repeat(60)}/`,
      `drwxr-xr-x 0/0 0 ${when} ${longDir}/`,
      `-rw-r--r-- 0/0 10 ${when} ${longDir}/${'f'.repeat(40)}`,
    ]);
    expect(listing(1)).toEqual([
      `-rw-r----- 0/0 6 ${when} etc/hostname`,
      `-rw-r--r-- 0/0 0 ${when} etc/.wh.gone`,
      `lrwxrwxrwx 0/0 0 ${when} etc/link -> ../opq/new`,
      `-rw-r--r-- 0/0 0 ${when} opq/.wh..wh..opq`,
      `-rwsr-xr-x 0/0 1500 ${when} opq/new`,
    ]);
    expect(listing(2)).toEqual([`drwxrwxrwt 0/0 0 ${when} empty/`]);
  });

  it('is the same bytes every time', () => {
    expect(buildOciArchive(LAYERS, 'v1').archive.equals(image.archive)).toBe(true);
  });
});

describe('chainIds', () => {
  it('is the first diff_id, then the sha256 of "<chain below> <diff_id>"', () => {
    const a = `sha256:${'a'.repeat(64)}`;
    const b = `sha256:${'b'.repeat(64)}`;
    expect(chainIds([a, b])).toEqual([a, `sha256:${hex(Buffer.from(`${a} ${b}`))}`]);
  });
});

describe('expectedTree', () => {
  it('applies whiteouts, opaque dirs and replacements layer by layer', () => {
    const tree = expectedTree(LAYERS);
    expect([...tree.keys()].sort()).toEqual(
      ['etc', 'etc/hostname', 'etc/link', 'opq', 'opq/new', 'd'.repeat(60), longDir, `${longDir}/${'f'.repeat(40)}`, 'empty'].sort(),
    );
    expect(tree.get('etc/hostname')).toEqual({ kind: 'file', mode: 0o640, content: Buffer.from('upper\n') });
    expect(tree.get('etc/link')).toEqual({ kind: 'symlink', target: '../opq/new' });
    expect(tree.get('opq')).toEqual({ kind: 'dir', mode: 0o750 });
    expect(tree.get('empty')).toEqual({ kind: 'dir', mode: 0o1777 });
  });

  it('refuses a whiteout of nothing and an entry without its parent', () => {
    expect(() => expectedTree([{ entries: [{ kind: 'whiteout', path: 'nope' }] }])).toThrow(/no lower layer/);
    expect(() => expectedTree([{ entries: [{ kind: 'file', path: 'a/b', content: '', mode: 0o644 }] }])).toThrow(/no parent/);
    expect(() => expectedTree([{ entries: [{ kind: 'dir', path: '../x', mode: 0o755 }] }])).toThrow(/relative/);
  });

  it('removes a whited-out directory with everything below it', () => {
    const tree = expectedTree([
      {
        entries: [
          { kind: 'dir', path: 'a', mode: 0o755 },
          { kind: 'dir', path: 'a/b', mode: 0o755 },
          { kind: 'file', path: 'a/b/c', content: 'x', mode: 0o644 },
        ],
      },
      { entries: [{ kind: 'whiteout', path: 'a/b' }] },
    ]);
    expect([...tree.keys()]).toEqual(['a']);
  });
});
