// docs/api.md is the reference of the package's faces: a name exported without a word there fails.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('docs/api.md', () => {
  it('names every value the root and devmapper/testing export', async () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/api.md'), 'utf8');
    const names = [...Object.keys(await import('../../src/index.js')), ...Object.keys(await import('../../src/testing.js'))];
    expect(names.length).toBeGreaterThan(50);
    expect(names.filter((n) => !new RegExp(`\\b${n}\\b`).test(doc))).toEqual([]);
  });
});
