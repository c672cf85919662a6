// `npm run bench -- --repeat N`: the figures of N boots side by side. Each boot's ratios were taken
// within its own rounds (bench/results/boots/boot-K.json); here each boot gives its median, and
// the verdict is on the median of the boots, with their range as the spread.
//   node --import tsx bench/boots.ts OUT.md boot-1.json boot-2.json ...
import { readFileSync, writeFileSync } from 'node:fs';
import { figureLine, type Figure } from './report.js';
import { fmtTarget, median, spread, verdict } from './stats.js';

interface Boot {
  boot: number;
  started: string;
  guest: string;
  kernel: string;
  cpus: number;
  loadStart: string;
  figures: Figure[];
}

const [out, ...files] = process.argv.slice(2);
if (!out || files.length === 0) throw new Error('usage: boots.ts OUT.md BOOT.json...');
const boots = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Boot).sort((a, b) => a.boot - b.boot);
const keys = [...new Set(boots.flatMap((b) => b.figures.map((f) => f.key)))];
const lines = [
  `## devmapper bench: ${boots.length} boots`,
  '',
  ...boots.map(
    (b) => `- Boot ${b.boot}: ${b.started}, ${b.guest}, kernel \`${b.kernel}\`, ${b.cpus} CPU(s), load at start ${b.loadStart}.`,
  ),
  '',
  `| figure | target | ${boots.map((b) => `boot ${b.boot}`).join(' | ')} | median of boots | range of boots | verdict |`,
  `|---|---|${boots.map(() => '---').join('|')}|---|---|---|`,
];
const notes: string[] = [];
for (const key of keys) {
  const per = boots.map((b) => b.figures.find((f) => f.key === key));
  const first = per.find((f) => f !== undefined) as Figure;
  const medians = per.filter((f): f is Figure => f !== undefined).map((f) => median(f.rounds));
  const s = spread(medians);
  const cells = per.map((f) =>
    f ? `${median(f.rounds).toFixed(2)} (${Math.min(...f.rounds).toFixed(2)}–${Math.max(...f.rounds).toFixed(2)})` : 'n/a',
  );
  lines.push(
    `| ${first.label} | ${fmtTarget(first.target)} | ${cells.join(' | ')} | ${s.median.toFixed(2)} | ${s.min.toFixed(2)}–${s.max.toFixed(2)} | ${verdict(s, first.target)} |`,
  );
  notes.push(figureLine(first.label, s, first.target, 'boots'));
}
lines.push(
  '',
  '- Each boot cell: the median of its rounds and (range over its rounds). "within noise": the median of the boots and their range fall on different sides of the target.',
  ...notes.map((n) => `- ${n}`),
);
const text = `${lines.join('\n')}\n`;
writeFileSync(out, text);
process.stdout.write(`\n${text}`);
