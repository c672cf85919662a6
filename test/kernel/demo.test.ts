// `devmapper demo` end to end in the real kernel: it prints the table, exits 0 and leaves nothing
// behind: no dm device, no loop device, no file in its temporary folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { listLoops } from '../../src/loop/index.js';
import { kernelHooks, oracleLs, RUN_DIR } from './support/env.js';

kernelHooks();

const BIN = join(import.meta.dirname, '../../bin/devmapper');

test('the demo runs, prints its table and removes everything', () => {
  // TMPDIR under the sweeper's folder and a dmtest- prefix: a failed run is cleaned by kernelHooks.
  const tmp = join(RUN_DIR, 'demo');
  mkdirSync(tmp, { recursive: true });
  const prefix = `dmtest-${process.pid}-demo`;
  const r = spawnSync(BIN, ['demo', '--storage-opt', `dm.prefix=${prefix}`], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: tmp, DEVMAPPER_PROGRESS: '0' },
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = r.stdout;
  expect(out).toMatch(/^LAYER +PARENT +THIN ID +FILES +MAPPED +EXCLUSIVE +CHANGES/m);
  for (const [layer, parent, id] of [
    ['(base)', '-', 0],
    ['os', '\\(base\\)', 1],
    ['app', 'os', 2],
    ['app-v2', 'app', 3],
    ['other', 'os', 4],
  ]) {
    expect(out).toMatch(
      new RegExp(`^${String(layer).replace(/[()]/g, '\\$&')} +${parent} +${id} +\\d+ \\(.*\\) +[\\d.]+ MiB +[\\d.]+ (?:[KM]i)?B `, 'm'),
    );
  }
  expect(out).toMatch(/^app-v2 .*~app\/server\.js -app\/assets\.bin$/m);
  // EXCLUSIVE, counted in the pool's metadata: other's 2 MiB data.bin is its own, shared with no layer.
  const other = /^other +os +4 +\d+ \(.*?\) +[\d.]+ MiB +([\d.]+) MiB /m.exec(out);
  expect(Number(other?.[1])).toBeGreaterThanOrEqual(2);
  expect(out).toMatch(/is shared by copy-on-write/);
  expect(out).toMatch(/^ +app +app\/server\.js: console\.log\('v1'\) +app\/assets\.bin: 4\.0 MiB$/m);
  expect(out).toMatch(/^ +app-v2 +app\/server\.js: console\.log\('v2'\) +app\/assets\.bin: \(deleted\)$/m);
  expect(out).toMatch(/^removed the layers .*, the pool, its loop devices and /m);
  // Nothing left: no device of that prefix, no loop on a file of the folder, no folder of the demo's.
  expect([...oracleLs().keys()].filter((n) => n.startsWith(prefix))).toEqual([]);
  expect(listLoops().filter((l) => l.backingFile.startsWith(`${tmp}/`))).toEqual([]);
  // (tsx, when bin/devmapper runs the sources, keeps its cache under TMPDIR too: not the demo's.)
  expect(readdirSync(tmp).filter((n) => !n.startsWith('tsx-'))).toEqual([]);
});

test('--keep where device-mapper stays: commands that work, with the path of bin/devmapper when not on PATH', () => {
  const tmp = join(RUN_DIR, 'demo-keep');
  mkdirSync(tmp, { recursive: true });
  const prefix = `dmtest-${process.pid}-keep`;
  // As on a host: no guest variable. PATH without bin/devmapper, as in the guest and a fresh clone.
  const env = { ...process.env, TMPDIR: tmp, DEVMAPPER_GUEST: '' };
  const r = spawnSync(BIN, ['demo', '--keep', '--storage-opt', `dm.prefix=${prefix}`], { encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
  const home = /^kept: (\S+) /m.exec(r.stdout)?.[1];
  expect(home?.startsWith(`${tmp}/devmapper-demo-`)).toBe(true);
  const look = /^ {2}look: {3}(.*)$/m.exec(r.stdout)?.[1];
  const remove = /^ {2}remove: (.*)$/m.exec(r.stdout)?.[1];
  expect(look).toBe(`${BIN} layer ls --home ${home}`);
  const ls = spawnSync('bash', ['-c', look!], { encoding: 'utf8', env });
  expect(ls.stdout).toMatch(/^app-v2 +3 /m);
  expect([...oracleLs().keys()].filter((n) => n.startsWith(prefix)).length).toBeGreaterThan(0);
  const rm = spawnSync('bash', ['-c', remove!], { encoding: 'utf8', env });
  expect(rm.status, rm.stderr).toBe(0);
  expect(existsSync(home!)).toBe(false);
  expect([...oracleLs().keys()].filter((n) => n.startsWith(prefix))).toEqual([]);
  expect(listLoops().filter((l) => l.backingFile.startsWith(`${tmp}/`))).toEqual([]);
});

test('--keep in the throwaway guest says the pool goes with it and how to keep one', () => {
  const tmp = join(RUN_DIR, 'demo-keep-guest');
  mkdirSync(tmp, { recursive: true });
  const prefix = `dmtest-${process.pid}-kg`;
  const r = spawnSync(BIN, ['demo', '--keep', '--storage-opt', `dm.prefix=${prefix}`], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: tmp, DEVMAPPER_GUEST: 'uml' },
  });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^kept: \S+ \(pool \S+, 4 layers\) in the test guest, which powers off now/m);
  expect(r.stdout).toContain('scripts/vm/guest-run --shell');
  expect(r.stdout).not.toMatch(/^ {2}(look|remove):/m);
  // This guest is still up (the test runs in it): the pool is there; take it down.
  const home = /^kept: (\S+) /m.exec(r.stdout)?.[1];
  expect(spawnSync(BIN, ['pool', 'shutdown', '--home', home!], { encoding: 'utf8' }).status).toBe(0);
  rmSync(home!, { recursive: true, force: true });
});
