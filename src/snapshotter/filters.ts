// containerd's filter syntax (List's `filters`), read as containerd's filters package reads it:
//
//   filter    := selector (',' selector)*          every selector must match
//   selector  := fieldpath [operator value]        no operator: the field is present
//   fieldpath := field ('.' field)*                field: [A-Za-z0-9_-]+ or "quoted"
//   operator  := '==' | '!=' | '~='                ~= is a regular expression, unanchored
//   value     := "quoted" | a run of printable characters up to ',' or a space
//
// A regular expression may also be quoted /like this/ or |like this|. Quoted text takes Go's escapes
// (\n, \t, \\, \x41, \u00e9, the quote itself; nothing else). Several filters match a snapshot when
// any one does; none, or an empty one, matches every snapshot.
//
// The fields of a snapshot are containerd's: `name`, `parent` (present even when empty), `kind`
// ("view", "active", "committed") and `labels.<key>` (the path after `labels` joined with '.', so
// labels."a.b" and labels.a.b name the same key).
import { SnapshotError } from './errors.js';
import type { SnapshotInfo } from './types.js';

export type FilterOperator = 'present' | '==' | '!=' | '~=';

export interface Selector {
  fieldpath: string[];
  operator: FilterOperator;
  /** '' for `present`. */
  value: string;
}

export type SnapshotPredicate = (info: SnapshotInfo) => boolean;

const EOF = '';

class FilterSyntaxError extends Error {}

/** A rune scanner over one filter: the position points at the next character. */
class Scanner {
  private pos = 0;
  /** After an operator, the next token is a value (which may hold characters a field may not). */
  private inValue = false;
  constructor(readonly input: string) {}

  /** The next character without taking it; EOF at the end. */
  peek(): string {
    const cp = this.input.codePointAt(this.pos);
    return cp === undefined ? EOF : String.fromCodePoint(cp);
  }

  get position(): number {
    return this.pos;
  }

  private next(): string {
    const ch = this.peek();
    this.pos += ch.length;
    return ch;
  }

  fail(at: number, why: string): never {
    throw new FilterSyntaxError(`${why} at offset ${at}`);
  }

  /** The next token: spaces before it skipped. */
  scan(): { kind: 'eof' | 'quoted' | 'value' | 'field' | 'separator' | 'operator' | 'other'; text: string; at: number } {
    while (isSpace(this.peek())) this.next();
    const at = this.pos;
    const ch = this.next();
    if (ch === EOF) return { kind: 'eof', text: '', at };
    if (ch === '\0') this.fail(at, 'unexpected NUL');
    if (isQuote(ch)) {
      this.scanQuoted(ch, at);
      return { kind: 'quoted', text: this.input.slice(at, this.pos), at };
    }
    if (ch === ',' || ch === '.') {
      this.inValue = false;
      return { kind: 'separator', text: ch, at };
    }
    if (isOperatorChar(ch)) {
      while (isOperatorChar(this.peek())) this.next();
      this.inValue = true;
      return { kind: 'operator', text: this.input.slice(at, this.pos), at };
    }
    if (this.inValue) {
      while (this.peek() !== EOF && isValueChar(this.peek())) this.next();
      this.inValue = false;
      return { kind: 'value', text: this.input.slice(at, this.pos), at };
    }
    if (isFieldChar(ch)) {
      while (isFieldChar(this.peek())) this.next();
      return { kind: 'field', text: this.input.slice(at, this.pos), at };
    }
    return { kind: 'other', text: ch, at };
  }

  /** Up to the closing quote; the escapes are checked when the text is unquoted. */
  private scanQuoted(quote: string, at: number): void {
    for (;;) {
      const ch = this.next();
      if (ch === EOF || ch === '\n') this.fail(at, 'quoted text not terminated');
      if (ch === quote) return;
      if (ch === '\\') this.next();
    }
  }
}

const isSpace = (ch: string): boolean => ch !== EOF && /^\s$/u.test(ch);
const isQuote = (ch: string): boolean => ch === '"' || ch === '/' || ch === '|';
const isOperatorChar = (ch: string): boolean => ch === '=' || ch === '!' || ch === '~';
const isFieldChar = (ch: string): boolean => /^[A-Za-z0-9_-]$/.test(ch);
const isValueChar = (ch: string): boolean => ch !== ',' && !isSpace(ch) && /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(ch);

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
};
const HEX_DIGITS: Readonly<Record<string, number>> = { x: 2, u: 4, U: 8 };

/** The text a quoted token stands for (its first character is the quote). */
function unquote(s: Scanner, token: string, at: number): string {
  const quote = token[0]!;
  const body = token.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; ) {
    const ch = body[i]!;
    if (ch !== '\\') {
      out += ch;
      i += 1;
      continue;
    }
    const e = body[i + 1] ?? '';
    if (e in SIMPLE_ESCAPES) {
      out += SIMPLE_ESCAPES[e];
      i += 2;
    } else if (e === quote) {
      out += quote;
      i += 2;
    } else if (e in HEX_DIGITS) {
      const n = HEX_DIGITS[e]!;
      const digits = body.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(digits)) s.fail(at, `bad \\${e} escape in ${token}`);
      const cp = Number.parseInt(digits, 16);
      if (cp > 0x10ffff) s.fail(at, `\\${e}${digits} is beyond Unicode in ${token}`);
      out += String.fromCodePoint(cp);
      i += 2 + n;
    } else if (/^[0-7]$/.test(e)) {
      const digits = body.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(digits) || Number.parseInt(digits, 8) > 0xff) s.fail(at, `bad octal escape in ${token}`);
      out += String.fromCharCode(Number.parseInt(digits, 8));
      i += 4;
    } else {
      s.fail(at, `illegal escape \\${e} in ${token}`);
    }
  }
  return out;
}

function field(s: Scanner): string {
  const t = s.scan();
  if (t.kind === 'field') return t.text;
  if (t.kind === 'quoted') {
    // A field name may be quoted only with "...": / and | quote regular expressions.
    if (t.text[0] !== '"') s.fail(t.at, `a field is quoted with "..." only, not ${t.text[0]}`);
    return unquote(s, t.text, t.at);
  }
  return s.fail(t.at, 'expected a field or a quoted field');
}

function fieldpath(s: Scanner): string[] {
  const path = [field(s)];
  while (s.peek() === '.') {
    s.scan();
    path.push(field(s));
  }
  return path;
}

function operator(s: Scanner): Exclude<FilterOperator, 'present'> {
  const t = s.scan();
  if (t.kind !== 'operator') s.fail(t.at, 'expected an operator (==, != or ~=)');
  if (t.text === '==' || t.text === '!=' || t.text === '~=') return t.text;
  return s.fail(t.at, `unsupported operator ${t.text}`);
}

function value(s: Scanner, op: Exclude<FilterOperator, 'present'>): string {
  const t = s.scan();
  if (t.kind === 'value' || t.kind === 'field') return t.text;
  if (t.kind === 'quoted') {
    if (t.text[0] !== '"' && op !== '~=') s.fail(t.at, `only a regular expression (~=) may be quoted with ${t.text[0]}`);
    return unquote(s, t.text, t.at);
  }
  return s.fail(t.at, 'expected a value or a quoted value');
}

function selector(s: Scanner): Selector {
  const path = fieldpath(s);
  const next = s.peek();
  if (next === ',' || next === EOF) return { fieldpath: path, operator: 'present', value: '' };
  const op = operator(s);
  return { fieldpath: path, operator: op, value: value(s, op) };
}

/** The selectors of one filter (all must match); [] for the empty filter. SnapshotError InvalidArgument on bad syntax. */
export function parseSelectors(filter: string): Selector[] {
  if (filter === '') return [];
  const s = new Scanner(filter);
  try {
    const list = [selector(s)];
    for (;;) {
      const next = s.peek();
      if (next === EOF) return list;
      if (next !== ',') s.fail(s.position, `unexpected ${JSON.stringify(next)}`);
      s.scan();
      list.push(selector(s));
    }
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw new SnapshotError('InvalidArgument', `filter ${JSON.stringify(filter)}: ${e.message}`);
    throw e;
  }
}

/**
 * A regular expression of Go's syntax as a JavaScript one. Go's leading flag group `(?ims)` becomes
 * JavaScript's flags; the rest of the two syntaxes agree on what filters use (classes, anchors,
 * groups, repetition).
 */
export function goRegExp(source: string): RegExp {
  const m = /^\(\?([imsU]+)\)/.exec(source);
  let flags = '';
  let body = source;
  if (m) {
    if (m[1]!.includes('U')) throw new SyntaxError('the U flag (ungreedy) has no JavaScript form');
    flags = [...new Set(m[1]!)].join('');
    body = source.slice(m[0].length);
  }
  return new RegExp(body, flags);
}

/** A snapshot's field as containerd's snapshot adaptor gives it: [value, present]. */
export function fieldOf(info: SnapshotInfo, path: readonly string[]): [string, boolean] {
  switch (path[0]) {
    case 'name':
      return [info.name, true];
    case 'parent':
      return [info.parent, true];
    case 'kind':
      return [info.kind, true];
    case 'labels': {
      const key = path.slice(1).join('.');
      return Object.hasOwn(info.labels, key) ? [info.labels[key]!, true] : ['', false];
    }
    default:
      return ['', false];
  }
}

function compile(sel: Selector, filter: string): SnapshotPredicate {
  const { fieldpath: path, value: want } = sel;
  switch (sel.operator) {
    case 'present':
      return (info) => fieldOf(info, path)[1];
    case '==':
      return (info) => {
        const [v, present] = fieldOf(info, path);
        return present && v === want;
      };
    case '!=':
      // An absent field is '' here, as in containerd: `labels.x!=a` matches a snapshot without x.
      return (info) => fieldOf(info, path)[0] !== want;
    case '~=': {
      let re: RegExp;
      try {
        re = goRegExp(want);
      } catch (e) {
        throw new SnapshotError(
          'InvalidArgument',
          `filter ${JSON.stringify(filter)}: bad regular expression ${want}: ${(e as Error).message}`,
        );
      }
      return (info) => re.test(fieldOf(info, path)[0]);
    }
  }
}

/** One filter: every selector must match. */
export function parseFilter(filter: string): SnapshotPredicate {
  const preds = parseSelectors(filter).map((sel) => compile(sel, filter));
  return (info) => preds.every((p) => p(info));
}

/** List's filters: a snapshot is listed when any filter matches it (every snapshot when there are none). */
export function parseFilters(filters: readonly string[]): SnapshotPredicate {
  if (filters.length === 0) return () => true;
  const preds = filters.map(parseFilter);
  return (info) => preds.some((p) => p(info));
}
