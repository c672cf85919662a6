// Sums vitest JSON reports of the tiers into one closing line, "tests: N passed, M failed",
// and fails when a tier has no report or ran no test (a tier must never pass by skipping).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, ...tiers] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
let ok = true;
for (const tier of tiers) {
  let report;
  try {
    report = JSON.parse(readFileSync(join(dir, `${tier}.json`), 'utf8'));
  } catch {
    console.log(`tier ${tier}: no report (it did not run)`);
    ok = false;
    continue;
  }
  const { numPassedTests: p, numFailedTests: f, numPendingTests: s, numTodoTests: t } = report;
  console.log(`tier ${tier}: ${p} passed, ${f} failed, ${s + t} skipped`);
  if (p + f === 0) {
    console.log(`tier ${tier} ran no test`);
    ok = false;
  }
  passed += p;
  failed += f;
  skipped += s + t;
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(ok && failed === 0 ? 0 : 1);
