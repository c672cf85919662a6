// containerd 1.6.20's snapshotter conformance suite (snapshots/testsuite) against `devmapper
// snapshotter serve`, through containerd's own gRPC client: the Go test binary built from
// test/containerd/suite by scripts/containerd/go (on the host, before the guest boots: see
// scripts/vm/lib.sh). Every test of the suite starts its own server and pool; every one must pass
// (Rename is skipped by that version of the suite), and nothing of the pools may be left behind.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { listLoops } from '../../src/loop/index.js';
import { mountTable } from '../../src/thin/mount.js';
import { BIN, kernelHooks, oracleLs, RUN_DIR, RUN_PREFIX } from './support/env.js';

kernelHooks({ sweepEach: false });

const REPO = join(import.meta.dirname, '../..');
const SUITE_BIN = join(REPO, '.vm/containerd-suite.test');
/** The run's output as it comes, for watching a long run from the host. */
const SUITE_LOG = join(REPO, '.vm/containerd-suite.log');
const TOP = 'TestDevmapper';
const PREFIX = `${RUN_PREFIX}suite`;
const TMP = join(RUN_DIR, 'suite');
/** The Go side's limit; the test's own is a minute more. */
const GO_TIMEOUT_S = Number(process.env.DEVMAPPER_SUITE_TIMEOUT ?? 2400);

/** The tests of containerd 1.6.20's SnapshotterSuite, in its order, and the result each must have. */
const EXPECTED: ReadonlyArray<readonly [string, 'PASS' | 'SKIP']> = [
  ['Basic', 'PASS'],
  ['StatActive', 'PASS'],
  ['StatComitted', 'PASS'],
  ['TransitivityTest', 'PASS'],
  ['PreareViewFailingtest', 'PASS'],
  ['Update', 'PASS'],
  ['Remove', 'PASS'],
  ['Walk', 'PASS'],
  ['LayerFileupdate', 'PASS'],
  ['RemoveDirectoryInLowerLayer', 'PASS'],
  ['Chown', 'PASS'],
  ['DirectoryPermissionOnCommit', 'PASS'],
  ['RemoveIntermediateSnapshot', 'PASS'],
  ['DeletedFilesInChildSnapshot', 'PASS'],
  ['MoveFileFromLowerLayer', 'PASS'],
  // 1.6.20's checkRename starts with t.Skip.
  ['Rename', 'SKIP'],
  ['ViewReadonly', 'PASS'],
  ['StatInWalk', 'PASS'],
  ['CloseTwice', 'PASS'],
  ['RootPermission', 'PASS'],
  ['128LayersMount', 'PASS'],
];

interface GoRun {
  /** Test name (`TestDevmapper` or `TestDevmapper/Basic`) -> PASS | FAIL | SKIP. */
  results: Map<string, string>;
  /** Test name -> the lines `go test -v` printed for it (its log, its result). */
  logs: Map<string, string[]>;
}

/**
 * Reads `go test -v` output. With parallel subtests the log lines of one test come in runs, each
 * after a `=== RUN|CONT|PAUSE|NAME <test>` header; a `--- PASS|FAIL|SKIP: <test> (Ns)` line gives a
 * result, and the indented lines after it belong to that test too.
 */
function parseGoTest(out: string): GoRun {
  const results = new Map<string, string>();
  const logs = new Map<string, string[]>();
  let current = '';
  for (const line of out.split('\n')) {
    const header = /^=== (?:RUN|CONT|PAUSE|NAME)\s+(\S+)/.exec(line);
    const result = /^\s*--- (PASS|FAIL|SKIP): (\S+) \(/.exec(line);
    if (header) current = header[1]!;
    if (result) {
      current = result[2]!;
      results.set(current, result[1]!);
    }
    if (current !== '' && !header) {
      const l = logs.get(current) ?? [];
      logs.set(current, l);
      l.push(line);
    }
  }
  return { results, logs };
}

/** Runs the suite binary; resolves with its exit status and its output (stdout and stderr, in order). */
function runSuite(): Promise<{ status: number | null; signal: string | null; out: string }> {
  mkdirSync(TMP, { recursive: true });
  const args = ['-test.v', '-test.parallel', '1', '-test.timeout', `${GO_TIMEOUT_S}s`, '-test.run', `^${TOP}$`];
  const env = {
    ...process.env,
    DEVMAPPER_BIN: BIN,
    // Small loop files; the prefix names every dm device of the suite's pools, for the check below.
    DEVMAPPER_SUITE_OPTS: `dm.loopdatasize=2G dm.loopmetadatasize=128M dm.basesize=512M dm.prefix=${PREFIX}`,
    // The suite's folders and the pools' homes (loop files) under this run's folder.
    TMPDIR: TMP,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(SUITE_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    const log = createWriteStream(SUITE_LOG);
    const take = (b: Buffer): void => {
      chunks.push(b);
      log.write(b);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      log.end();
      resolve({ status, signal, out: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

test(
  "containerd 1.6.20's snapshotter suite passes against `devmapper snapshotter serve`",
  async () => {
    if (process.env.DEVMAPPER_GUEST === undefined) {
      // On a host with device-mapper the kernel tier runs here, with the network: build (cached).
      const b = spawnSync(join(REPO, 'scripts/containerd/go'), ['build-test', join(REPO, 'test/containerd/suite'), SUITE_BIN], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      if (b.status !== 0) throw new Error(`scripts/containerd/go build-test failed (${b.status ?? b.signal})`);
    }
    if (!existsSync(SUITE_BIN)) {
      throw new Error(
        `${SUITE_BIN} is missing: scripts/vm/guest-run builds it before the guest boots (see its output for the build's error), ` +
          'or run scripts/containerd/go build-test test/containerd/suite .vm/containerd-suite.test',
      );
    }
    const run = await runSuite();
    const { results, logs } = parseGoTest(run.out);

    const problems: string[] = [];
    for (const [name, want] of EXPECTED) {
      const got = results.get(`${TOP}/${name}`) ?? 'no result';
      if (got !== want) problems.push(`${name}: ${got}, expected ${want}`);
    }
    const known = new Set(EXPECTED.map(([n]) => `${TOP}/${n}`));
    for (const [name, got] of results) {
      if (name.startsWith(`${TOP}/`) && !known.has(name) && got === 'FAIL') problems.push(`${name}: FAIL`);
    }
    if (problems.length > 0 || run.status !== 0 || results.get(TOP) !== 'PASS') {
      // The failed tests' logs, and the log of any test that started but has no result (the one
      // running when the binary panicked or timed out), then the panic's first lines.
      const shown = [...logs.keys()].filter((n) => n !== TOP && (results.get(n) ?? 'FAIL') === 'FAIL');
      const detail = shown.map((n) => `--- ${n} (${results.get(n) ?? 'no result'})\n${(logs.get(n) ?? []).slice(-150).join('\n')}`);
      const lines = run.out.split('\n');
      const panic = lines.findIndex((l) => l.startsWith('panic: '));
      if (panic >= 0) detail.push(lines.slice(panic, panic + 40).join('\n'));
      if (detail.length === 0) detail.push(lines.slice(-200).join('\n'));
      throw new Error(
        `the suite exited ${run.status ?? run.signal}, ${TOP} ${results.get(TOP) ?? 'no result'}; ` +
          `${problems.length} subtests not as expected:\n  ${problems.join('\n  ')}\n\n${detail.join('\n\n')}`,
      );
    }
    const summary = EXPECTED.map(([n]) => `${n} ${results.get(`${TOP}/${n}`)}`);
    expect(summary).toEqual(EXPECTED.map(([n, r]) => `${n} ${r}`));

    // Every pool was shut down by the factory's cleanup: no device, loop device or mount left.
    expect([...oracleLs().keys()].filter((n) => n.startsWith(PREFIX))).toEqual([]);
    expect(listLoops().filter((l) => l.backingFile.startsWith(`${TMP}/`))).toEqual([]);
    expect(mountTable().filter((m) => m.mountPoint.startsWith(`${TMP}/`))).toEqual([]);
  },
  (GO_TIMEOUT_S + 60) * 1000,
);
