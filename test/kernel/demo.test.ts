// `devmapper demo` end to end in the real kernel: it prints the table, exits 0 and leaves nothing
// behind: no dm device, no loop device, no file in its temporary folder.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
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
  expect(out).toMatch(/^LAYER +PARENT +THIN ID +FILES +MAPPED +NEW IN POOL +CHANGES/m);
  for (const [layer, parent, id] of [['(base)', '-', 0], ['os', '\\(base\\)', 1], ['app', 'os', 2], ['app-v2', 'app', 3], ['other', 'os', 4]]) {
    expect(out).toMatch(new RegExp(`^${String(layer).replace(/[()]/g, '\\$&')} +${parent} +${id} +\\d+ \\(.*\\) +[\\d.]+ MiB +[\\d.]+ MiB`, 'm'));
  }
  expect(out).toMatch(/^app-v2 .*~app\/server\.js -app\/assets\.bin$/m);
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

test('--keep keeps the pool and says how to remove it; those commands remove it', () => {
  const tmp = join(RUN_DIR, 'demo-keep');
  mkdirSync(tmp, { recursive: true });
  const prefix = `dmtest-${process.pid}-keep`;
  const r = spawnSync(BIN, ['demo', '--keep', '--storage-opt', `dm.prefix=${prefix}`], { encoding: 'utf8', env: { ...process.env, TMPDIR: tmp } });
  expect(r.status, r.stderr).toBe(0);
  const home = /^kept: (\S+) /m.exec(r.stdout)?.[1];
  expect(home?.startsWith(`${tmp}/devmapper-demo-`)).toBe(true);
  const ls = spawnSync(BIN, ['layer', 'ls', '--home', home!], { encoding: 'utf8' });
  expect(ls.stdout).toMatch(/^app-v2 +3 /m);
  expect([...oracleLs().keys()].filter((n) => n.startsWith(prefix)).length).toBeGreaterThan(0);
  const shutdown = spawnSync(BIN, ['pool', 'shutdown', '--home', home!], { encoding: 'utf8' });
  expect(shutdown.status, shutdown.stderr).toBe(0);
  expect([...oracleLs().keys()].filter((n) => n.startsWith(prefix))).toEqual([]);
  expect(listLoops().filter((l) => l.backingFile.startsWith(`${tmp}/`))).toEqual([]);
});
