// Untrusted bytes and text into every decoder (test/fuzz/properties.ts, the same list `npm run fuzz`
// runs at 10^6 cases): each may only give a value or its typed error, and every case returns within
// a time bound. Here about 10^5 cases in all, split by the list's weights.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { readRecordedOpts } from '../../src/cli/pool-home.js';
import { OperationError } from '../../src/cli/usage.js';
import { DECODERS, GOLDEN_SETS, PROPERTIES, shares } from '../fuzz/properties.js';
import { runProperty } from '../fuzz/run.js';

const TOTAL = 100_000;
/** Generous on a busy 2-core machine; a decoder case takes microseconds. */
const CASE_MS = 2_000;

describe('fuzz: decoders give a value or their typed error, and return', () => {
  test('there are golden samples for every mutated property', () => {
    for (const [name, set] of Object.entries(GOLDEN_SETS)) expect(set().length, name).toBeGreaterThan(0);
  });

  const n = shares(TOTAL);
  let ran = 0;
  for (const decoder of DECODERS) {
    test(decoder, () => {
      for (const [i, p] of PROPERTIES.entries()) {
        if (p.decoder !== decoder) continue;
        const r = runProperty(p, { cases: n[i]!, caseMs: CASE_MS });
        expect(r.failure, `${p.decoder}: ${p.cases}`).toBeUndefined();
        expect(r.cases).toBe(n[i]);
        ran += r.cases;
      }
    });
  }

  test('about 10^5 cases ran, into every decoder', () => {
    expect(ran).toBeGreaterThanOrEqual(TOTAL * 0.99);
    expect(DECODERS.length).toBeGreaterThanOrEqual(25);
  });
});

describe('what fuzzing found', () => {
  test('a storage-opts file that is not JSON is EUCLEAN (OperationError), not a SyntaxError', () => {
    const home = mkdtempSync(join(tmpdir(), 'devmapper-opts-'));
    try {
      for (const text of ['', '["dm.basesize=1G"', '\u0000']) {
        writeFileSync(join(home, 'storage-opts'), text);
        expect(() => readRecordedOpts(home)).toThrow(OperationError);
        expect(() => readRecordedOpts(home)).toThrow(/^EUCLEAN: .*storage-opts is not a JSON list of strings$/);
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
