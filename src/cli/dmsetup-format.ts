// dmsetup's output formats (tools/dmsetup.c of lvm2), so that scripts and eyes used to dmsetup
// read ours the same way. Pure functions over the typed results of src/dm.
import type { DeviceInfo } from '../dm/info.js';
import { formatDev, type DevT } from '../structs/dev.js';

/** A device's info as `dmsetup info` shows it: the kernel's answer plus the read-ahead from sysfs. */
export interface InfoView extends DeviceInfo {
  /** From sysfs (bdi/read_ahead_kb), in sectors; undefined when unknown. */
  readAheadSectors?: number | undefined;
}

export interface TargetLineView {
  startSector: bigint;
  lengthSectors: bigint;
  type: string;
  params: string;
}

const v3 = (v: readonly number[]): string => v.join('.');

export function formatVersion(libraryVersion: string, driverVersion: readonly number[]): string {
  return `Library version:   ${libraryVersion}\nDriver version:    ${v3(driverVersion)}\n`;
}

/** `dmsetup targets` and `target-version`: "%-16s v%d.%d.%d". */
export function formatTargets(list: readonly { name: string; version: readonly number[] }[]): string {
  return list.map((t) => `${t.name.padEnd(16)} v${v3(t.version)}\n`).join('');
}

const byName = <T extends { name: string }>(list: readonly T[]): T[] =>
  [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/** `dmsetup ls`: "name\t(maj:min)", sorted by name; `--target` prints "(maj, min)" instead. */
export function formatLs(list: readonly { name: string; dev: DevT }[], commaStyle = false): string {
  if (list.length === 0) return 'No devices found\n';
  return byName(list)
    .map((d) => `${d.name}\t(${commaStyle ? `${d.dev.major}, ${d.dev.minor}` : formatDev(d.dev)})\n`)
    .join('');
}

function stateWord(i: InfoView): string {
  let s = i.suspended ? 'SUSPENDED' : 'ACTIVE';
  if (i.readOnly) s += ' (READ-ONLY)';
  if (i.deferredRemove) s += ' (DEFERRED REMOVE)';
  return s;
}

function tablesWord(i: InfoView): string {
  if (i.liveTable && i.inactiveTable) return 'LIVE & INACTIVE';
  if (i.liveTable) return 'LIVE';
  if (i.inactiveTable) return 'INACTIVE';
  return 'None';
}

/** `dmsetup info NAME`: the labelled block, with a blank line after each device. */
export function formatInfo(i: InfoView): string {
  const lines = [
    `Name:              ${i.name}`,
    `State:             ${stateWord(i)}`,
    ...(i.readAheadSectors === undefined ? [] : [`Read Ahead:        ${i.readAheadSectors}`]),
    `Tables present:    ${tablesWord(i)}`,
    `Open count:        ${i.openCount}`,
    `Event number:      ${i.eventNr}`,
    `Major, minor:      ${i.dev.major}, ${i.dev.minor}`,
    `Number of targets: ${i.targetCount}`,
  ];
  if (i.uuid) lines.push(`UUID: ${i.uuid}`);
  return `${lines.join('\n')}\n\n`;
}

/** `dmsetup info -c`: the default columns, sorted by name. */
export function formatInfoColumns(list: readonly InfoView[]): string {
  const rows = byName(list).map((i) => {
    const stat = (i.liveTable ? 'L' : '-') + (i.inactiveTable ? 'I' : '-') + (i.suspended ? 's' : '-') + (i.readOnly ? 'r' : 'w');
    return {
      name: i.name,
      maj: `${i.dev.major}`,
      min: `${i.dev.minor}`,
      stat,
      open: `${i.openCount}`,
      targ: `${i.targetCount}`,
      event: `${i.eventNr}`,
      uuid: i.uuid,
    };
  });
  // dmsetup's report fields have default widths (name 16 ... uuid 32) that grow with content.
  const w = (key: keyof (typeof rows)[number], min: number): number => Math.max(min, ...rows.map((r) => r[key].length));
  const nameW = w('name', 16);
  const majW = w('maj', 3);
  const minW = w('min', 3);
  const openW = w('open', 4);
  const targW = w('targ', 4);
  const eventW = w('event', 6);
  const uuidW = w('uuid', 32);
  const line = (c: [string, string, string, string, string, string, string, string]): string =>
    `${c[0].padEnd(nameW)} ${c[1].padStart(majW)} ${c[2].padStart(minW)} ${c[3].padEnd(4)} ${c[4].padStart(openW)} ` +
    `${c[5].padStart(targW)} ${c[6].padStart(eventW)} ${c[7].padEnd(uuidW)}\n`;
  const header =
    `${'Name'.padEnd(nameW)} ${'Maj'.padStart(majW)} ${'Min'.padStart(minW)} Stat ${'Open'.padStart(openW)} ` +
    `${'Targ'.padStart(targW)} ${'Event'.padEnd(eventW)} ${'UUID'.padEnd(uuidW)}\n`;
  return header + rows.map((r) => line([r.name, r.maj, r.min, r.stat, r.open, r.targ, r.event, r.uuid])).join('');
}

/** `dmsetup table|status NAME`: "start length type params", params possibly empty (trailing space kept). */
export function formatTargetLines(lines: readonly TargetLineView[], prefix = ''): string {
  return lines.map((l) => `${prefix}${l.startSector} ${l.lengthSectors} ${l.type} ${l.params}\n`).join('');
}

/** `dmsetup deps NAME`: "N dependencies\t: (maj, min) ..."; with names, "(loop2)". */
export function formatDeps(deps: readonly DevT[], names?: readonly (string | undefined)[]): string {
  const items = deps.map((d, k) => ` (${names?.[k] ?? `${d.major}, ${d.minor}`})`);
  return `${deps.length} dependencies\t:${items.join('')}\n`;
}

/**
 * `dmsetup ls --tree`: every device that no other device uses, and under it what it stands on
 * (its deps, recursively; a dep that is not a dm device shows as its major:minor alone).
 */
export function formatTree(list: readonly { name: string; dev: DevT }[], depsOf: (dev: DevT) => readonly DevT[], unicode = false): string {
  // dmsetup draws with box characters when the locale's codeset is UTF-8, else with ASCII.
  const [branch, lastBranch, pipe] = unicode ? ['├─', '└─', '│'] : ['|-', '`-', '|'];
  const key = formatDev;
  const nameOf = new Map(list.map((e) => [key(e.dev), e.name]));
  const deps = new Map(list.map((e) => [key(e.dev), depsOf(e.dev)]));
  const used = new Set([...deps.values()].flat().map(key));
  const lines: string[] = [];
  const children = (dev: DevT, prefix: string): void => {
    const below = deps.get(key(dev)) ?? [];
    below.forEach((child, k) => {
      const last = k === below.length - 1;
      lines.push(`${prefix}${last ? lastBranch : branch}${nameOf.get(key(child)) ?? ''} (${key(child)})`);
      children(child, `${prefix}${last ? '   ' : `${pipe}  `}`);
    });
  };
  for (const e of byName(list)) {
    if (used.has(key(e.dev))) continue;
    lines.push(`${e.name} (${key(e.dev)})`);
    children(e.dev, ' ');
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** Whether the C library would call this locale's codeset UTF-8 (LC_ALL, then LC_CTYPE, then LANG). */
export function localeIsUtf8(env: NodeJS.ProcessEnv = process.env): boolean {
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || '';
  return /\.utf-?8\b/i.test(locale);
}
