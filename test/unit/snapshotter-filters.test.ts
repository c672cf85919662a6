// List's filters in containerd's syntax: what parses (and to which selectors), what is refused
// (InvalidArgument, as containerd's ParseAll answers), and what each operator matches against
// containerd's snapshot fields (name, parent, kind, labels.<key>).
import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { fieldOf, goRegExp, parseFilter, parseFilters, parseSelectors } from '../../src/snapshotter/filters.js';
import type { SnapshotInfo } from '../../src/snapshotter/types.js';

function info(name: string, over: Partial<SnapshotInfo> = {}): SnapshotInfo {
  return { name, parent: '', kind: 'committed', labels: {}, created: 1n, updated: 1n, ...over };
}

const base = info('default/6/sha256:aaa', { labels: { 'containerd.io/snapshot/type': 'layer', 'a.b': 'dotted' } });
const child = info('default/7/sha256:bbb', { parent: base.name, labels: { 'containerd.io/snapshot.ref': 'x', gc: '' } });
const work = info('default/9/k2', { parent: child.name, kind: 'active', labels: { 'containerd.io/snapshot/type': 'rw' } });
const look = info('default/10/v', { parent: child.name, kind: 'view' });
const ALL = [base, child, work, look];

const names = (filters: string[]) => ALL.filter(parseFilters(filters)).map((i) => i.name);

function refused(filter: string): SnapshotError {
  try {
    parseFilters([filter]);
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    expect((e as SnapshotError).code).toBe('InvalidArgument');
    expect((e as SnapshotError).message).toContain(JSON.stringify(filter));
    return e as SnapshotError;
  }
  throw new Error(`filter ${JSON.stringify(filter)} was accepted`);
}

describe('parsing', () => {
  const cases: [string, ReturnType<typeof parseSelectors>][] = [
    ['name==foo', [{ fieldpath: ['name'], operator: '==', value: 'foo' }]],
    ['name!=foo', [{ fieldpath: ['name'], operator: '!=', value: 'foo' }]],
    ['name~=^f.o$', [{ fieldpath: ['name'], operator: '~=', value: '^f.o$' }]],
    ['labels.foo', [{ fieldpath: ['labels', 'foo'], operator: 'present', value: '' }]],
    [
      'labels."containerd.io/snapshot/type"==layer',
      [{ fieldpath: ['labels', 'containerd.io/snapshot/type'], operator: '==', value: 'layer' }],
    ],
    ['name==default/4/k2', [{ fieldpath: ['name'], operator: '==', value: 'default/4/k2' }]],
    ['name==sha256:ab.cd', [{ fieldpath: ['name'], operator: '==', value: 'sha256:ab.cd' }]],
    ['labels.x==a=b', [{ fieldpath: ['labels', 'x'], operator: '==', value: 'a=b' }]],
    ['name=="with space, and comma"', [{ fieldpath: ['name'], operator: '==', value: 'with space, and comma' }]],
    ['name=="tab\\there \\"q\\" \\x41\\u00e9\\101\\\\"', [{ fieldpath: ['name'], operator: '==', value: 'tab\there "q" Aé' + 'A\\' }]],
    ['name~=/a|b/', [{ fieldpath: ['name'], operator: '~=', value: 'a|b' }]],
    ['name~=|a/b|', [{ fieldpath: ['name'], operator: '~=', value: 'a/b' }]],
    ['name~=/a\\/b/', [{ fieldpath: ['name'], operator: '~=', value: 'a/b' }]],
    ['  name  ==  foo', [{ fieldpath: ['name'], operator: '==', value: 'foo' }]],
    [
      'name==x,  labels.y',
      [
        { fieldpath: ['name'], operator: '==', value: 'x' },
        { fieldpath: ['labels', 'y'], operator: 'present', value: '' },
      ],
    ],
    [
      'kind==active,parent==p,labels.a!=b',
      [
        { fieldpath: ['kind'], operator: '==', value: 'active' },
        { fieldpath: ['parent'], operator: '==', value: 'p' },
        { fieldpath: ['labels', 'a'], operator: '!=', value: 'b' },
      ],
    ],
    ['labels.a.b', [{ fieldpath: ['labels', 'a', 'b'], operator: 'present', value: '' }]],
    ['name==ünïcødé', [{ fieldpath: ['name'], operator: '==', value: 'ünïcødé' }]],
    ['', []],
  ];
  for (const [text, want] of cases) {
    it(JSON.stringify(text), () => {
      expect(parseSelectors(text)).toEqual(want);
    });
  }

  const bad: [string, RegExp][] = [
    ['name=foo', /unsupported operator =/],
    ['name===foo', /unsupported operator ===/],
    ['name==', /expected a value/],
    ['name!=,kind', /expected a value/],
    ['name==.foo', /expected a value/],
    ['==foo', /expected a field/],
    ['   ', /expected a field/],
    [',name', /expected a field/],
    ['name,', /expected a field/],
    ['name==a b', /unexpected " "/],
    ['name==a ,kind', /unexpected " "/],
    ['name ,kind', /expected an operator/],
    ['labels.', /expected a field/],
    ['labels..x', /expected a field/],
    ['name=="unterminated', /not terminated/],
    ['name=="a\nb"', /not terminated/],
    ['name=="\\q"', /illegal escape \\q/],
    ['name=="\\x4"', /bad \\x escape/],
    ['name=="\\U00110000"', /beyond Unicode/],
    ['name=="\\400"', /bad octal/],
    ['name==/foo/', /only a regular expression/],
    ['name!=|foo|', /only a regular expression/],
    ['labels./x/==y', /quoted with "..." only/],
    ['name~=/a\\.b/', /illegal escape/],
    ['name~=(unclosed', /bad regular expression/],
    ['name@=x', /expected an operator/],
    ['name=="a"b', /unexpected "b"/],
    ['name==a\0', /unexpected/],
  ];
  for (const [text, why] of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      expect(refused(text).message).toMatch(why);
    });
  }

  it('refuses the whole list when one filter is bad', () => {
    expect(() => parseFilters(['name==a', 'name=b'])).toThrow(SnapshotError);
  });
});

describe("containerd's snapshot fields", () => {
  it('name, parent and kind are always present; parent may be empty', () => {
    expect(fieldOf(base, ['name'])).toEqual([base.name, true]);
    expect(fieldOf(base, ['parent'])).toEqual(['', true]);
    expect(fieldOf(work, ['kind'])).toEqual(['active', true]);
    expect(fieldOf(look, ['kind'])).toEqual(['view', true]);
  });
  it("labels.<path> joins the path with '.'; an unknown field is absent", () => {
    expect(fieldOf(base, ['labels', 'a', 'b'])).toEqual(['dotted', true]);
    expect(fieldOf(base, ['labels', 'a.b'])).toEqual(['dotted', true]);
    expect(fieldOf(base, ['labels', 'missing'])).toEqual(['', false]);
    expect(fieldOf(child, ['labels', 'gc'])).toEqual(['', true]);
    expect(fieldOf(base, ['labels'])).toEqual(['', false]);
    expect(fieldOf(base, ['created'])).toEqual(['', false]);
    expect(fieldOf(base, ['labels', 'toString'])).toEqual(['', false]);
  });
});

describe('matching', () => {
  it('no filters, or an empty one, lists everything', () => {
    expect(names([])).toEqual(ALL.map((i) => i.name));
    expect(names([''])).toEqual(ALL.map((i) => i.name));
  });
  it('== on each field', () => {
    expect(names(['kind==committed'])).toEqual([base.name, child.name]);
    expect(names(['kind==active'])).toEqual([work.name]);
    expect(names(['kind==view'])).toEqual([look.name]);
    expect(names([`parent==${child.name}`])).toEqual([work.name, look.name]);
    expect(names(['parent==""'])).toEqual([base.name]);
    expect(names([`name==${work.name}`])).toEqual([work.name]);
    expect(names(['labels."containerd.io/snapshot/type"==layer'])).toEqual([base.name]);
  });
  it('!= matches an absent field too (it is the empty value)', () => {
    expect(names(['labels."containerd.io/snapshot/type"!=layer'])).toEqual([child.name, work.name, look.name]);
    expect(names(['kind!=committed'])).toEqual([work.name, look.name]);
  });
  it('presence', () => {
    expect(names(['labels.gc'])).toEqual([child.name]);
    expect(names(['labels."containerd.io/snapshot/type"'])).toEqual([base.name, work.name]);
    expect(names(['parent'])).toEqual(ALL.map((i) => i.name));
    expect(names(['nosuchfield'])).toEqual([]);
  });
  it('~= is an unanchored regular expression, over the empty value when absent', () => {
    expect(names(['name~=sha256'])).toEqual([base.name, child.name]);
    expect(names(['name~=^default/\\d+/k'])).toEqual([work.name]);
    expect(names(['name~=/k2$/'])).toEqual([work.name]);
    expect(names(['labels.missing~=^$'])).toEqual(ALL.map((i) => i.name));
    expect(names(['name~=(?i)SHA256:A'])).toEqual([base.name]);
  });
  it("',' is AND within a filter; separate filters are ORed", () => {
    expect(names([`kind==committed,parent==${base.name}`])).toEqual([child.name]);
    expect(names(['kind==view', 'kind==active'])).toEqual([work.name, look.name]);
    expect(names(['kind==view,kind==active'])).toEqual([]);
    expect(names(['kind==view', ''])).toEqual(ALL.map((i) => i.name));
  });
  it('one parsed filter answers the same twice (no regular expression state carried over)', () => {
    const p = parseFilter('name~=sha256');
    expect([p(base), p(base), p(work), p(work)]).toEqual([true, true, false, false]);
  });
});

describe("Go's regular-expression flags", () => {
  it('a leading (?ims) becomes the flags; U has no JavaScript form', () => {
    expect(goRegExp('(?i)abc').flags).toBe('i');
    expect(goRegExp('(?is)a.c').test('A\nC')).toBe(true);
    expect(goRegExp('abc').flags).toBe('');
    expect(() => goRegExp('(?U)a+')).toThrow(/ungreedy/);
  });
});
