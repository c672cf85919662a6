// Bench P5's process: `node thin-usage.cjs METADATA` prints the usage table (bundled by the bench
// into one CommonJS file, as the CLI is, so that it starts as a user's program would).
import { usageTable } from './thin-usage.js';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: thin-usage METADATA\n');
  process.exit(2);
}
process.stdout.write(usageTable(path));
