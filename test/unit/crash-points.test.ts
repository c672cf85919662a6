// docs/pool.md's crash table and CRASH_POINTS (src/thin/crash-points.ts) say the same: every
// point, what is durable after it, and what the next open's reconcile does. A point added to one
// and not the other fails here; the message holds the table's rows as they should read.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CRASH_POINTS, type CrashPointInfo } from '../../src/thin/crash-points.js';

const HEADING = '## Crash points';

/** The rows of docs/pool.md's crash table: | `point` | after | reconcile |. */
function docRows(doc: string): Map<string, CrashPointInfo> {
  const start = doc.indexOf(`\n${HEADING}\n`);
  if (start < 0) throw new Error(`docs/pool.md has no "${HEADING}" section`);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const rows = new Map<string, CrashPointInfo>();
  for (const line of section.split('\n')) {
    const m = /^\| `([^`]+)` \| (.*) \| `(none|forward|back|restart)` \|$/.exec(line);
    if (!m) continue;
    if (rows.has(m[1]!)) throw new Error(`docs/pool.md lists ${m[1]} twice`);
    rows.set(m[1]!, { after: m[2]!.replaceAll('\\|', '|'), reconcile: m[3] as CrashPointInfo['reconcile'] });
  }
  return rows;
}

function tableRow(name: string, info: CrashPointInfo): string {
  return `| \`${name}\` | ${info.after.replaceAll('|', '\\|')} | \`${info.reconcile}\` |`;
}

describe('docs/pool.md crash table', () => {
  it('lists every point of CRASH_POINTS, in its order, with its after and reconcile, and nothing else', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/pool.md'), 'utf8');
    const rows = docRows(doc);
    const expected = Object.entries(CRASH_POINTS).map(([name, info]) => tableRow(name, info));
    const actual = [...rows].map(([name, info]) => tableRow(name, info));
    expect(actual, `docs/pool.md "${HEADING}" should list:\n${expected.join('\n')}\n`).toEqual(expected);
  });

  it('has rows the parser reads (a table of more than a handful of points)', () => {
    expect(Object.keys(CRASH_POINTS).length).toBeGreaterThan(20);
    const doc = readFileSync(join(import.meta.dirname, '../../docs/pool.md'), 'utf8');
    expect(docRows(doc).size).toBe(Object.keys(CRASH_POINTS).length);
  });
});
