// A kernel test's child program, bundled once per test file with esbuild: a child spawned per
// crash point then starts without a TypeScript loader. The bundle lives under node_modules so that
// koffi (left external, a native module) resolves from it.
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';

export interface ChildBundle {
  /** The bundled program, for `node FILE`. */
  file: string;
  remove(): void;
}

/** Bundle `entry` (a path relative to test/kernel/) into a fresh folder named after `prefix`. */
export function bundleChild(entry: string, prefix: string): ChildBundle {
  const dir = mkdtempSync(join(resolve(import.meta.dirname, '../../../node_modules'), `.${prefix}-`));
  const file = join(dir, 'child.mjs');
  buildSync({
    entryPoints: [resolve(import.meta.dirname, '..', entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: file,
    external: ['koffi'],
    logLevel: 'warning',
  });
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
