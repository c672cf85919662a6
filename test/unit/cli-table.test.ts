// The command table against what is generated from it: help for every command and subcommand (and
// that it runs nothing), docs/cli.md's usage lines, the options each usage line names, and every
// usage mistake exiting 2 with one line, before anything is opened. This machine's kernel has no
// device-mapper: a command that got as far as opening the control node would exit 1 (ENODEV).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { commandHelp, groupHelp, parseInvocation, usageBlock, usageLine, type Group } from '../../src/cli/command.js';
import { tableFrom } from '../../src/cli/dm-support.js';
import { group as dm } from '../../src/cli/dm.js';
import { group as layer } from '../../src/cli/layer.js';
import { group as loop } from '../../src/cli/loop.js';
import { main } from '../../src/cli/main.js';
import { json } from '../../src/cli/output.js';
import { group as pool } from '../../src/cli/pool.js';
import { group as snapshotter } from '../../src/cli/snapshotter.js';
import { VERSION } from '../../src/cli/version.js';

const root = resolve(import.meta.dirname, '..', '..');
const GROUPS: readonly Group[] = [dm, loop, pool, layer, snapshotter];

let stdout = '';
let stderr = '';
beforeEach(() => {
  stdout = '';
  stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((t: string | Uint8Array) => {
    stdout += String(t);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => {
    stderr += String(t);
    return true;
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const code = await main(args);
  return { code, stdout, stderr };
}

describe('help comes from the table and runs nothing', () => {
  for (const g of GROUPS) {
    for (const c of g.commands) {
      const name = `${g.name} ${c.name}`;
      test(`${name}: --help, -h, help ${c.name}, help ${name}`, async () => {
        const want = commandHelp(g, c);
        expect(want).toContain(`usage: ${usageLine(g, c)}\n`);
        // After other arguments too: `dm remove_all --help` once removed every device.
        for (const args of [
          [g.name, c.name, '--help'],
          [g.name, c.name, '-h'],
          [g.name, c.name, 'some-arg', '--json', '--help'],
          [g.name, 'help', c.name],
          ['help', g.name, c.name],
        ]) {
          stdout = '';
          stderr = '';
          const r = await run(args);
          expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
          expect(r.stdout).toBe(want);
        }
      });
    }
    test(`${g.name}: --help, -h, help lists every subcommand's usage line`, async () => {
      for (const args of [
        [g.name, '--help'],
        [g.name, '-h'],
        [g.name, 'help'],
        ['help', g.name],
      ]) {
        stdout = '';
        const r = await run(args);
        expect(r.code).toBe(0);
        expect(r.stdout).toBe(groupHelp(g));
        for (const c of g.commands) expect(r.stdout).toContain(usageLine(g, c));
      }
    });
  }
  test('dm --help lists info -u UUID and deps -o devno', async () => {
    const r = await run(['dm', '--help']);
    expect(r.stdout).toMatch(/^ {2}devmapper dm info \[NAME \| -u UUID\] \[-c\]$/m);
    expect(r.stdout).toMatch(/^ {2}devmapper dm deps \[NAME\] \[-o devno\|devname\]$/m);
  });
  test('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
    const r = await run(['--version']);
    expect(r).toEqual({ code: 0, stdout: `devmapper ${pkg.version}\n`, stderr: '' });
  });
  test('a command without a subcommand: its help on stderr, exit 2', async () => {
    const r = await run(['loop']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(groupHelp(loop));
  });
});

describe('the table, its usage lines and docs/cli.md agree', () => {
  test("docs/cli.md lists every subcommand's usage line, generated from the table", () => {
    const doc = readFileSync(join(root, 'docs/cli.md'), 'utf8');
    const m = /<!-- usage lines: begin[^\n]*-->\n```\n([\s\S]*?)```\n<!-- usage lines: end -->/.exec(doc);
    expect(m, 'docs/cli.md has the usage-lines block').not.toBeNull();
    expect(m?.[1]).toBe(usageBlock(GROUPS));
  });
  test("every option a usage line names is in the command's parser, and the other way round", () => {
    for (const g of GROUPS) {
      for (const c of g.commands) {
        const all = { ...c.options, ...g.common };
        const named = [...`${c.usage} `.matchAll(/(?<![\w-])(--?[\w-]+)/g)].map((x) => x[1] as string);
        for (const opt of named) {
          const known = opt.startsWith('--') ? opt.slice(2) in all : Object.values(all).some((o) => o.short === opt.slice(1));
          expect(known, `${usageLine(g, c)}: ${opt}`).toBe(true);
        }
        for (const [long, o] of Object.entries(c.options)) {
          expect(
            named.includes(`--${long}`) || (o.short !== undefined && named.includes(`-${o.short}`)),
            `${usageLine(g, c)} names --${long}`,
          ).toBe(true);
        }
      }
    }
  });
});

describe('usage mistakes exit 2 with one line, before anything is opened', () => {
  const F = '/nonexistent/file.img';
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /^devmapper: unknown command 'frobnicate'/],
    [['dm', 'frobnicate'], /unknown dm command 'frobnicate'/],
    [['dm', 'create'], /missing device name/],
    [['dm', 'create', 'x'], /create needs --table, --table-file or --notable/],
    [['dm', 'create', 'x', '--table', '0 2048 linear /dev/loop0 0', '--bogus'], /Unknown option '--bogus'$|Unknown option '--bogus' \(/],
    [['dm', 'create', 'x', '--table', '0 2048 zero', '--notable'], /exclude each other/],
    [['dm', 'create', 'x', '--table', '0 x linear /dev/loop0 0'], /table line 1 '0 x linear \/dev\/loop0 0': length x is not a number/],
    [['dm', 'create', 'x', '--table', '2048 0 linear /dev/loop0 0'], /table line 1 .*: length 0: a target maps at least one sector/],
    [
      ['dm', 'create', 'x', '--table', '0 100 zero', '--table', '200 100 zero'],
      /table line 2 '200 100 zero': starts at sector 200, expected 100/,
    ],
    [['dm', 'create', 'x', '--table', '100 100 zero'], /starts at sector 100, expected 0/],
    [['dm', 'create', 'bad/name', '--notable'], /device name "bad\/name": contains '\/'/],
    [['dm', 'create', 'x', '--notable', '-u', ''], /uuid/],
    [['dm', 'load', 'x'], /load needs --table or --table-file/],
    [['dm', 'info', 'a', 'b'], /unexpected argument 'b'/],
    [['dm', 'info', 'a', '-u', 'U'], /give NAME or -u UUID, not both/],
    [['dm', 'deps', '-o', 'bogus'], /-o bogus: expected devno or devname/],
    [['dm', 'message', 'x', 'notasector', 'hello'], /sector 'notasector' is not a number/],
    [['dm', 'message', 'x', '0'], /missing device name, sector or message/],
    [['dm', 'wait', 'x', 'soon'], /event number 'soon' is not a number/],
    [['dm', 'rename', 'x'], /missing new name/],
    [['dm', 'rename', 'x', 'a/b'], /device name "a\/b"/],
    [['dm', 'setgeometry', 'x', '1', '2', 'three', '4'], /'three' is not a number/],
    [['dm', 'remove'], /missing device name/],
    [['dm', 'suspend', 'a', 'b'], /unexpected argument 'b'/],
    [['loop', 'attach'], /missing file/],
    [['loop', 'attach', F, '--sector-size', '1000'], /--sector-size 1000: must be a power of two from 512 to 4096 bytes/],
    [['loop', 'attach', F, '--sector-size', '8192'], /--sector-size 8192/],
    [['loop', 'attach', F, '--offset=abc'], /--offset 'abc' is not a number of bytes/],
    [['loop', 'attach', F, '--bogus'], /Unknown option '--bogus'/],
    [['loop', 'detach'], /missing loop device/],
    [['loop', 'find'], /missing file/],
    [['pool', 'resize'], /missing size/],
    [['pool', 'resize', '12Q'], /SIZE/],
    [['pool', 'init', '--storage-opt', 'dm.basesize=huge', '--home', '/nonexistent/home'], /--storage-opt dm\.basesize="huge": not a size/],
    [['pool', 'status', 'extra', '--home', '/nonexistent/home'], /unexpected argument 'extra'/],
    [['layer', 'create', 'base', '--home', '/nonexistent/home'], /layer id/],
    [['layer', 'mount'], /missing layer id/],
    [['snapshotter', 'serve', '--address', '/nonexistent/s.sock'], /missing --home DIR/],
    [['snapshotter', 'serve', '--home', '/nonexistent/home'], /missing --address SOCKET/],
    [
      ['snapshotter', 'serve', '--home', '/nonexistent/home', '--address', '/nonexistent/s.sock', '--storage-opt', 'dm.basesize=huge'],
      /--storage-opt dm\.basesize="huge": not a size/,
    ],
    [['snapshotter', 'serve', '--home', '/nonexistent/home', '--address', '/nonexistent/s.sock', 'extra'], /unexpected argument 'extra'/],
  ];
  for (const [args, pattern] of cases) {
    test(args.join(' '), async () => {
      const r = await run(args);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
      const lines = r.stderr.split('\n');
      expect(lines, r.stderr).toHaveLength(2); // one line and its newline
      expect(lines[0]).toMatch(pattern);
      if (args[0] !== 'frobnicate') {
        expect(lines[0]).toMatch(new RegExp(`^devmapper ${args[0]}: .* \\(try 'devmapper ${args[0]}( [\\w-]+)? --help'\\)$`));
      }
      expect(lines[0], 'no BigInt source text').not.toMatch(/\b\d+n\b/);
      expect(lines[0], 'no library field names').not.toMatch(/blockSizeBytes|sizeBytes|resizePool/);
    });
  }
});

describe('tables in command-line order', () => {
  test('--table and --table-file lines keep their order on the command line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-table-'));
    try {
      const file = join(dir, 't');
      writeFileSync(file, '# a comment\n0 100 zero\n\n100 50 error\n');
      const parse = (args: string[]) => parseInvocation(dm, dm.commands.find((c) => c.name === 'create')!, args, () => undefined);
      const fileFirst = tableFrom(parse(['x', '--table-file', file, '--table', '150 10 zero']).tokens);
      expect(fileFirst?.map((t) => [t.startSector, t.type])).toEqual([
        [0n, 'zero'],
        [100n, 'error'],
        [150n, 'zero'],
      ]);
      // The other order: the file's first line (start 0) now follows a line that ends at 10.
      expect(() => tableFrom(parse(['x', '--table', '0 10 zero', '--table-file', file]).tokens)).toThrow(
        /^table line 2 '0 100 zero': starts at sector 0, expected 10/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('loop find as losetup -j', () => {
  test('a file that does not exist: nothing bound to it, nothing printed, exit 0', async () => {
    expect(await run(['loop', 'find', '/nonexistent/file.img'])).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

describe('--json', () => {
  test('byte and sector counts and bigints are strings; other numbers stay numbers', () => {
    expect(JSON.parse(json({ sizeBytes: 4096, readAheadSectors: 256, thinId: 3, transactionId: 5n, dev: { major: 7 } }))).toEqual({
      sizeBytes: '4096',
      readAheadSectors: '256',
      thinId: 3,
      transactionId: '5',
      dev: { major: 7 },
    });
  });
});
