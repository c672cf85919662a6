// containerd's Update: only labels change. An empty mask replaces all labels; `labels` does the
// same; `labels.<key>` sets that one key from the request, or removes it when the request has none.
// Any other path (name, parent, kind, times) is refused, as containerd's storage refuses it.
// As its storage writes labels, a label whose value is empty is not kept.
import { SnapshotError } from './errors.js';

const LABELS = 'labels';
const LABEL_PREFIX = 'labels.';

/** The labels to keep: every one with a value (an empty value is no label). */
export function storedLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (v !== '') out[k] = v;
  return out;
}

/** The labels after an Update with `fieldpaths` of `requested` over `current`. */
export function updatedLabels(
  current: Readonly<Record<string, string>>,
  requested: Readonly<Record<string, string>>,
  fieldpaths: readonly string[],
): Record<string, string> {
  for (const path of fieldpaths) {
    if (path !== LABELS && !(path.startsWith(LABEL_PREFIX) && path.length > LABEL_PREFIX.length)) {
      throw new SnapshotError('InvalidArgument', `cannot update ${JSON.stringify(path)} of a snapshot: only labels can be updated`);
    }
  }
  if (fieldpaths.length === 0 || fieldpaths.includes(LABELS)) {
    return storedLabels(requested);
  }
  const out: Record<string, string> = { ...current };
  for (const path of fieldpaths) {
    const key = path.slice(LABEL_PREFIX.length);
    const v = Object.hasOwn(requested, key) ? requested[key] : undefined;
    if (v === undefined || v === '') delete out[key];
    else out[key] = v;
  }
  return out;
}
