// The comparison table: sections of rows, printed as markdown and kept for bench/results/latest.md,
// and the figures with targets, kept as JSON so that several boots can be put side by side
// (bench/boots.ts, `npm run bench -- --repeat N`).
import { fmtSpread, fmtTarget, spread, verdict, type Spread, type Target } from './stats.js';

export interface Section {
  title: string;
  header: string[];
  rows: string[][];
  notes: string[];
}

/** A ratio with a target, measured per round (programs interleaved in each round). */
export interface Figure {
  /** Stable key across runs: "p1.ours_vs_raw". */
  key: string;
  /** What the ratio is, in words: "P1 ours (with node) / raw C + mknod, cycles/s". */
  label: string;
  target: Target;
  /** The ratio in each kept round (warm-up dropped). */
  rounds: number[];
}

export class Report {
  readonly sections: Section[] = [];
  readonly figures: Figure[] = [];

  section(title: string, header: string[]): Section {
    const s: Section = { title, header, rows: [], notes: [] };
    this.sections.push(s);
    return s;
  }

  /** Records a target figure; returns the note line that says where it stands in this boot. */
  figure(f: Figure): string {
    this.figures.push(f);
    return figureLine(f.label, spread(f.rounds), f.target, 'rounds');
  }

  static render(s: Section): string {
    const lines = [`### ${s.title}`, '', `| ${s.header.join(' | ')} |`, `|${s.header.map(() => '---').join('|')}|`];
    for (const r of s.rows) lines.push(`| ${r.join(' | ')} |`);
    if (s.notes.length) lines.push('', ...s.notes.map((n) => `- ${n}`));
    return lines.join('\n');
  }

  render(): string {
    const parts = this.sections.map((s) => Report.render(s));
    if (this.figures.length) parts.unshift(Report.render(targetsSection(this.figures)));
    return parts.join('\n\n');
  }
}

export function figureLine(label: string, s: Spread, t: Target, over: string): string {
  return `Target ${label} ${fmtTarget(t)}: ${verdict(s, t)} (${fmtSpread(s)}: median and range over ${s.n} ${over}).`;
}

/** The targets of one boot: ratio per round, median and range, verdict. */
export function targetsSection(figures: readonly Figure[]): Section {
  const s: Section = {
    title: 'Targets in this boot (ratios taken within each round)',
    header: ['figure', 'target', 'median', 'range over rounds', 'rounds', 'verdict'],
    rows: [],
    notes: ['"within noise": the median and the range fall on different sides of the target, so another run could say the opposite.'],
  };
  for (const f of figures) {
    const sp = spread(f.rounds);
    s.rows.push([
      f.label,
      fmtTarget(f.target),
      sp.median.toFixed(2),
      `${sp.min.toFixed(2)}–${sp.max.toFixed(2)}`,
      `${sp.n}`,
      verdict(sp, f.target),
    ]);
  }
  return s;
}
