// The comparison table: sections of rows, printed as markdown and kept for bench/results/latest.md.
export interface Row {
  cells: string[];
}
export interface Section {
  title: string;
  header: string[];
  rows: string[][];
  notes: string[];
}

export class Report {
  readonly sections: Section[] = [];

  section(title: string, header: string[]): Section {
    const s: Section = { title, header, rows: [], notes: [] };
    this.sections.push(s);
    return s;
  }

  static render(s: Section): string {
    const lines = [`### ${s.title}`, '', `| ${s.header.join(' | ')} |`, `|${s.header.map(() => '---').join('|')}|`];
    for (const r of s.rows) lines.push(`| ${r.join(' | ')} |`);
    if (s.notes.length) lines.push('', ...s.notes.map((n) => `- ${n}`));
    return lines.join('\n');
  }

  render(): string {
    return this.sections.map((s) => Report.render(s)).join('\n\n');
  }
}
