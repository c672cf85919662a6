// The README's library examples, run as written against the real kernel: each in its own process
// (the sources through tsx; an .mts file, so an ES module wherever it lies), with this run's names
// and folders put in for the README's, so that the sweeper owns whatever a failure leaves. Each
// example must print what it says and leave nothing behind.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { listLoops } from '../../src/loop/index.js';
import { dmName, kernelHooks, oracleLs, RUN_DIR, RUN_PREFIX } from './support/env.js';

kernelHooks();

const repo = join(import.meta.dirname, '../..');

function kernelExamples(): string[] {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  return [...readme.matchAll(/<!-- example: kernel -->\n```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Runs `code` with 'devmapper' meaning this checkout's sources; each [from, to] must occur. */
function runExample(tag: string, code: string, replace: [string, string][]): string {
  let source = code.replaceAll("from 'devmapper'", `from '${join(repo, 'src/index.ts')}'`);
  for (const [from, to] of replace) {
    expect(source, `the example uses ${from}`).toContain(from);
    source = source.replaceAll(from, to);
  }
  mkdirSync(RUN_DIR, { recursive: true });
  const file = join(RUN_DIR, `readme-${tag}.mts`);
  writeFileSync(file, source);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: repo, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

function leftovers(): { devices: string[]; loops: string[] } {
  return {
    devices: [...oracleLs().keys()].filter((n) => n.startsWith(RUN_PREFIX)),
    loops: listLoops()
      .map((l) => l.backingFile)
      .filter((f) => f.startsWith(`${RUN_DIR}/`)),
  };
}

test('the README has the two kernel examples', () => {
  expect(kernelExamples()).toHaveLength(2);
});

test('a linear device over a loop device: created, read back, removed; the loop device goes with it', () => {
  const name = dmName('readme');
  const out = runExample('linear', kernelExamples()[0]!, [
    ["'/tmp/example.img'", `'${join(RUN_DIR, 'readme.img')}'`],
    ["'example'", `'${name}'`],
  ]);
  expect(out).toMatch(new RegExp(`^/dev/mapper/${name} is \\d+:\\d+$`, 'm'));
  expect(out).toMatch(/type: 'linear'/);
  expect(out).toMatch(/lengthSectors: 131072n/);
  expect(leftovers()).toEqual({ devices: [], loops: [] });
});

test('a pool with two layers through Driver: mounted, reported, removed, shut down', () => {
  const home = join(RUN_DIR, 'readme-pool');
  const out = runExample('driver', kernelExamples()[1]!, [
    ["'/var/lib/example'", `'${home}'`],
    ["'dm.fs=ext4'", `'dm.fs=ext4', 'dm.prefix=${RUN_PREFIX}readme'`],
  ]);
  expect(out).toContain(`layer2 is mounted at ${home}/mnt/layer2/rootfs`);
  expect(out).toMatch(new RegExp(`'Pool Name': '${RUN_PREFIX}readme-[\\d:]+-\\d+-pool'`));
  expect(out).toMatch(/'Data Space Total': '2048\.0 Mb'/);
  expect(leftovers()).toEqual({ devices: [], loops: [] });
}, 300_000);
