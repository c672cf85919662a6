// Our metadata reader on metadata images the kernel wrote (test/golden/thin-metadata, README there):
// each image decodes to what thin_ls and thin_dump printed for it when it was made.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { ThinMetadataError, THIN_METADATA_BLOCK_SIZE } from '../../src/structs/index.js';
import { memoryMetadataBlocks, readThinDevices, type MetadataBlocks } from '../../src/thin/metadata/index.js';
import { GOLDEN_DIR } from '../support/golden.js';
import { ourThinDump, ourThinLs, parseThinDumpXml, parseThinLs, type RootChoice } from '../support/thin-tools.js';

const DIR = join(GOLDEN_DIR, 'thin-metadata');

/** The images, whether each holds a metadata snapshot, and how many devices each view has. */
const IMAGES: { name: string; held: boolean; devices: number; heldDevices: number }[] = [
  { name: 'chain', held: false, devices: 6, heldDevices: 0 },
  { name: 'many', held: false, devices: 301, heldDevices: 0 },
  { name: 'held', held: true, devices: 3, heldDevices: 2 },
];

function image(name: string): Buffer {
  return gunzipSync(readFileSync(join(DIR, `${name}.meta.gz`)));
}

/** The image (or `bytes` in its place) as MetadataBlocks. */
function withImage<T>(name: string, fn: (blocks: MetadataBlocks) => T, bytes?: Buffer): T {
  const blocks = memoryMetadataBlocks(bytes ?? image(name));
  try {
    return fn(blocks);
  } finally {
    blocks.close();
  }
}

function stored(name: string, root: RootChoice) {
  const stem = join(DIR, root === 'held' ? `${name}.held` : name);
  return {
    ls: parseThinLs(readFileSync(`${stem}.thin_ls.txt`, 'utf8')),
    dump: parseThinDumpXml(readFileSync(`${stem}.thin_dump.xml`, 'utf8')),
  };
}

describe.each(IMAGES)('golden metadata image $name', (img) => {
  const roots: RootChoice[] = img.held ? ['superblock', 'held'] : ['superblock'];

  test.each(roots)('through the %s roots: thin ids, details and counts as thin_ls printed them', (root) => {
    const theirs = stored(img.name, root).ls;
    expect(theirs).toHaveLength(root === 'held' ? img.heldDevices : img.devices);
    const ours = withImage(img.name, (blocks) => ourThinLs(blocks, root));
    expect(ours.map((d) => d.thinId)).toEqual(theirs.map((d) => d.thinId));
    expect(ours).toEqual(theirs);
  });

  test.each(roots)('through the %s roots: superblock, devices and every mapping as thin_dump printed them', (root) => {
    const theirs = stored(img.name, root).dump;
    const ours = withImage(img.name, (blocks) => ourThinDump(blocks, root));
    expect(ours.superblock).toEqual(theirs.superblock);
    expect(ours.devices.map((d) => d.thinId)).toEqual(theirs.devices.map((d) => d.thinId));
    for (const [i, d] of theirs.devices.entries()) expect(ours.devices[i], `thin ${d.thinId}`).toEqual(d);
  });

  if (!img.held) {
    test('no metadata snapshot held: reading the held roots is a ThinMetadataError', () => {
      const err = withImage(img.name, (blocks) => {
        try {
          readThinDevices(blocks, { root: 'held' });
        } catch (e) {
          return e;
        }
        return null;
      });
      expect(err).toBeInstanceOf(ThinMetadataError);
    });
  }

  test('one flipped byte in the device details root: a ThinMetadataError naming that block', () => {
    const bytes = image(img.name);
    const detailsRoot = withImage(img.name, (blocks) => readThinDevices(blocks).roots.deviceDetailsRoot);
    expect(detailsRoot).toBeGreaterThan(0);
    // A byte among the keys: the node's checksum no longer holds.
    const at = detailsRoot * THIN_METADATA_BLOCK_SIZE + 40;
    bytes[at] = bytes[at]! ^ 0x01;
    const err = withImage(
      `${img.name}-flipped`,
      (blocks) => {
        try {
          readThinDevices(blocks);
        } catch (e) {
          return e;
        }
        return null;
      },
      bytes,
    );
    expect(err).toBeInstanceOf(ThinMetadataError);
    expect((err as ThinMetadataError).block).toBe(detailsRoot);
  });
});
