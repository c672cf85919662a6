import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Layers only call downward: structs <- ioctl <- dm/loop/blk <- thin <- driver/snapshotter <- cli.
// The root entry files (src/*.ts) may import any layer; only src/ioctl/libc.ts loads koffi.
const RANK: Record<string, number> = { structs: 0, ioctl: 1, dm: 2, loop: 2, blk: 2, thin: 3, driver: 4, snapshotter: 4, cli: 5 };
const ROOT_RANK = 6;
const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const SPECIFIER = /\b(?:from|import|require)\s*\(?\s*['"]([^'"]+)['"]/g;

const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
const rankOf = (rel: string): number => {
  const top = rel.split('/')[0] ?? '';
  return rel.includes('/') ? (RANK[top] ?? ROOT_RANK) : ROOT_RANK;
};
const imports = files.flatMap((file) =>
  [...readFileSync(join(src, file), 'utf8').matchAll(SPECIFIER)].map((m) => ({ file, spec: m[1] ?? '' })),
);

describe('layer order of src/', () => {
  it('reads the imports of every module', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(imports.filter((i) => i.spec.startsWith('.')).length).toBeGreaterThan(100);
  });

  it('imports only go down the layer order', () => {
    const upward = imports
      .filter((i) => i.spec.startsWith('.'))
      .map((i) => ({ ...i, target: relative(src, resolve(src, dirname(i.file), i.spec)) }))
      .filter((i) => rankOf(i.target) > rankOf(i.file))
      .map((i) => `${i.file} imports ${i.target}`);
    expect(upward).toEqual([]);
  });

  it('only src/ioctl/libc.ts loads koffi', () => {
    const loaders = imports.filter((i) => i.spec === 'koffi').map((i) => i.file);
    expect(loaders).toEqual(['ioctl/libc.ts']);
  });
});
