// Update's field paths as containerd's storage applies them: only labels, an empty mask or
// `labels` replaces them all, `labels.<k>` sets or removes one; empty values are no labels.
import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { storedLabels, updatedLabels } from '../../src/snapshotter/update-mask.js';

const current = { a: '1', b: '2', c: '3' };

describe('updatedLabels', () => {
  it('an empty mask replaces every label', () => {
    expect(updatedLabels(current, { x: '9' }, [])).toEqual({ x: '9' });
    expect(updatedLabels(current, {}, [])).toEqual({});
  });

  it('"labels" replaces every label, also beside labels.<k>', () => {
    expect(updatedLabels(current, { x: '9' }, ['labels'])).toEqual({ x: '9' });
    expect(updatedLabels(current, { x: '9' }, ['labels.a', 'labels'])).toEqual({ x: '9' });
  });

  it('labels.<k> sets one key from the request, or removes it when the request has none', () => {
    expect(updatedLabels(current, { a: 'new', x: '9' }, ['labels.a'])).toEqual({ a: 'new', b: '2', c: '3' });
    expect(updatedLabels(current, { x: '9' }, ['labels.b', 'labels.x'])).toEqual({ a: '1', c: '3', x: '9' });
    expect(updatedLabels(current, { b: '' }, ['labels.b'])).toEqual({ a: '1', c: '3' });
    // Keys with dots and slashes are keys: only the first "labels." is the path.
    expect(updatedLabels({}, { 'containerd.io/snapshot/x.y': 'v' }, ['labels.containerd.io/snapshot/x.y'])).toEqual({
      'containerd.io/snapshot/x.y': 'v',
    });
  });

  it('refuses any other path with InvalidArgument, changing nothing', () => {
    for (const path of ['name', 'parent', 'kind', 'created_at', 'updated_at', 'labels.', 'label.a', 'Labels']) {
      let err: unknown;
      try {
        updatedLabels(current, {}, ['labels.a', path]);
      } catch (e) {
        err = e;
      }
      expect(err, path).toBeInstanceOf(SnapshotError);
      expect((err as SnapshotError).code).toBe('InvalidArgument');
    }
    expect(current).toEqual({ a: '1', b: '2', c: '3' });
  });

  it('never returns the request object itself, nor keeps empty values', () => {
    const req = { a: 'x', e: '' };
    const out = updatedLabels(current, req, []);
    expect(out).toEqual({ a: 'x' });
    expect(out).not.toBe(req);
    expect(storedLabels({ k: '', v: 'w' })).toEqual({ v: 'w' });
  });
});
