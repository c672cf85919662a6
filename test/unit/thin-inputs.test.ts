// Input that must be refused where it enters, before a file, a dm name or a mount flag is made of
// it: device hashes (ill-formed UTF-16, control characters, whitespace), dm names that are the
// control node's, SELinux labels that would split into mount flags, and the recorded options file
// written through a predictable temp name.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { readRecordedOpts, STORAGE_OPTS_FILE, writeRecordedOpts } from '../../src/cli/pool-home.js';
import { deviceName, type DeviceName } from '../../src/dm/names.js';
import { MapperNodes, type MakeNode } from '../../src/dm/nodes.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import { MS_NODEV, MS_NOSUID } from '../../src/ioctl/libc.js';
import { InvalidHashError } from '../../src/thin/errors.js';
import { MetadataStore, validateHash } from '../../src/thin/metadata-store.js';
import { mountOptionsFor, parseMountOptions } from '../../src/thin/mount.js';
import { PoolNaming } from '../../src/thin/naming.js';
import { bytes } from '../../src/structs/units.js';
import { thinId } from '../../src/dm/names.js';
import { udevEventNr } from '../../src/dm/udev.js';
import { encodeDev } from '../../src/structs/dev.js';
import { DmCmd, DmFlag, dmRequest, encodeDmIoctl } from '../../src/structs/dm-ioctl.js';
import { dmRecord, type GoldenBufRecord } from '../support/golden.js';
import { ReplayTransport, replayDeviceMapper } from '../support/replay.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-inputs-'));
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

describe('device hashes', () => {
  test('a lone surrogate is refused: it would name the same file and dm device as U+FFFD', () => {
    // Both encode to the same UTF-8 bytes; the second record would overwrite the first.
    expect(Buffer.from('a\uD800').equals(Buffer.from('a\uFFFD'))).toBe(true);
    for (const h of ['a\uD800', 'a\uDC00b', '\uDBFF', 'x\uDC00\uD800']) {
      expect(() => validateHash(h), JSON.stringify(h)).toThrow(InvalidHashError);
      expect(() => validateHash(h)).toThrow(/lone surrogate/);
    }
    expect(validateHash('a\uFFFD')).toBe('a\uFFFD');
    expect(validateHash('emoji-\u{1F600}')).toBe('emoji-\u{1F600}');
  });

  test('two hashes never share one record', () => {
    const store = MetadataStore.open(join(dir, 'metadata'));
    const rec = { deviceId: thinId(1), sizeBytes: bytes(1024), transactionId: 1n, initialized: true, deleted: false };
    store.writeDevice({ ...rec, hash: 'a\uFFFD' });
    expect(() => store.writeDevice({ ...rec, hash: 'a\uD800', deviceId: thinId(2) })).toThrow(InvalidHashError);
    expect(store.readDevice('a\uFFFD')?.deviceId).toBe(1);
  });

  test.each([
    ['a\tb', 'tab'],
    ['a\nb', 'newline'],
    ['a\rb', 'carriage return'],
    ['a b', 'space'],
    ['a\x01b', 'control'],
    ['a\x1bb', 'control'],
    ['a\x7fb', 'control'],
    ['a\x85b', 'control'],
    ['a\x9fb', 'control'],
    ['a\vb', 'control'],
    ['a\u00a0b', 'space'],
    ['a\u2028b', 'space'],
    ['a\u3000b', 'space'],
    ['trailing ', 'space'],
  ])('%j refused (%s)', (h, why) => {
    expect(() => validateHash(h)).toThrow(InvalidHashError);
    expect(() => validateHash(h)).toThrow(new RegExp(why));
  });

  test('what Docker and containerd use is accepted', () => {
    const docker = 'f'.repeat(64);
    expect(validateHash(docker)).toBe(docker);
    expect(validateHash(`${docker}-init`)).toBe(`${docker}-init`);
    expect(validateHash('sha256:abc_DEF.1+2@x~y')).toBe('sha256:abc_DEF.1+2@x~y');
    expect(validateHash('caf\u00e9')).toBe('caf\u00e9');
  });

  test('the dm name made of a hash has no whitespace or control characters', () => {
    const n = PoolNaming.forHome(dir, 'devmapper');
    expect(() => n.deviceName('a b')).toThrow(InvalidHashError);
    expect(() => n.deviceName('a\nb')).toThrow(InvalidHashError);
  });
});

describe('layer ids on the command line', () => {
  let stderr = '';
  beforeEach(() => {
    stderr = '';
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => {
      stderr += String(t);
      return true;
    });
  });
  // A usage error (2) comes before the pool is looked for; a hash that passed would exit 1 (no pool).
  test.each([
    [['layer', 'create', 'a\nb'], /newline/],
    [['layer', 'create', 'a\tb'], /tab/],
    [['layer', 'create', 'ok', '-p', 'p\x1b[2J'], /control/],
    [['layer', 'rm', 'a b'], /space/],
    [['layer', 'mount', 'a\uD800'], /lone surrogate/],
    [['layer', 'status', 'a\x7f'], /control/],
  ])('%j exits 2 with one line', async (args, why) => {
    const code = await main([...args, '--home', join(dir, 'no-home')]);
    expect(code).toBe(2);
    const lines = stderr.split('\n');
    expect(lines, stderr).toHaveLength(2);
    expect(lines[0]).toMatch(/^devmapper layer: layer id: .* \(try 'devmapper layer [a-z]+ --help'\)$/);
    expect(lines[0]).toMatch(why);
    expect(existsSync(join(dir, 'no-home'))).toBe(false);
  });
});

describe('the control node is not a device name', () => {
  test.each(['control', '.', '..'])('deviceName(%j) is refused', (n) => {
    expect(() => deviceName(n)).toThrow(InvalidArgumentError);
  });
  test('names that only contain it are fine', () => {
    expect(deviceName('control0')).toBe('control0');
    expect(deviceName('Control')).toBe('Control');
    expect(deviceName('...')).toBe('...');
  });
  test('a lone surrogate is refused: the kernel would get U+FFFD', () => {
    expect(() => deviceName('a\uD800')).toThrow(/lone surrogate/);
  });

  test("create('control') sends no ioctl and touches no node", async () => {
    const s = replayDeviceMapper(new ReplayTransport([dmRecord('ls', 'DM_VERSION')]));
    await expect(s.dm.create('control' as DeviceName, { table: [] })).rejects.toThrow(InvalidArgumentError);
    await expect(s.dm.create('..' as DeviceName)).rejects.toThrow(InvalidArgumentError);
    expect(() => s.dm.mknodes('control' as DeviceName)).toThrow(InvalidArgumentError);
    expect(s.replay.calls.map((c) => c.command)).toEqual(['DM_VERSION']);
    expect(s.nodes.ops).toEqual([]);
    s.finish();
  });

  test('a device another tool named control is removed by dev without touching the control node', async () => {
    // The kernel's reply names the device `control`; its node would be /dev/mapper/control itself.
    const dev = { major: 254, minor: 7 };
    const before = encodeDmIoctl(
      {
        version: [4, 0, 0],
        dev: encodeDev(dev),
        flags: DmFlag.DM_PERSISTENT_DEV_FLAG,
        event_nr: udevEventNr({ running: false, waitMs: 0 }, 'remove'),
      },
      undefined,
      0,
    );
    const after = encodeDmIoctl({ version: [4, 47, 0], name: 'control', dev: encodeDev(dev) }, undefined, 312);
    const removeRecord: GoldenBufRecord = {
      ...dmRecord('removePool', 'DM_DEV_REMOVE'),
      label: 'synthetic:DM_DEV_REMOVE',
      req: dmRequest(DmCmd.DM_DEV_REMOVE),
      size: before.length,
      before,
      after,
      ret: 0,
      errno: 0,
      errno_name: '',
    };
    const s = replayDeviceMapper(new ReplayTransport([dmRecord('removePool', 'DM_VERSION'), removeRecord]));
    s.nodes.nodes.set('control', { major: 10, minor: 236 });
    await s.dm.remove({ dev });
    expect(s.nodes.ops).toEqual([]);
    expect(s.nodes.exists('control')).toBe(true);
    s.finish();
  });

  test('MapperNodes never replaces or unlinks <mapper>/control', () => {
    const made: string[] = [];
    const mknod: MakeNode = (path, spec) => {
      made.push(path);
      writeFileSync(path, `${spec.type} ${spec.major}:${spec.minor}`);
    };
    const nodes = new MapperNodes(dir, mknod);
    mkdirSync(nodes.mapperDir);
    const control = join(nodes.mapperDir, 'control');
    writeFileSync(control, 'the control node');
    expect(() => nodes.add('control', { major: 254, minor: 3 })).toThrow(InvalidArgumentError);
    expect(() => nodes.remove('control')).toThrow(InvalidArgumentError);
    expect(() => nodes.rename('control', 'x')).toThrow(InvalidArgumentError);
    nodes.add('x', { major: 254, minor: 4 });
    expect(() => nodes.rename('x', 'control')).toThrow(InvalidArgumentError);
    expect(readFileSync(control, 'utf8')).toBe('the control node');
    expect(made).toEqual([join(nodes.mapperDir, 'x')]);
  });
});

/** Runs `f`; the error it throws must be a MountOptionError (EINVAL). */
function mountOptionError(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    expect((e as Error).name).toBe('MountOptionError');
    expect((e as { code?: unknown }).code).toBe('EINVAL');
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('SELinux labels in mount options', () => {
  test('commas inside double quotes do not split the option', () => {
    const label = 'system_u:object_r:container_file_t:s0:c1,suid,dev,c2';
    const r = parseMountOptions(['nosuid,nodev', `context="${label}"`]);
    expect(r.flags).toBe(MS_NOSUID | MS_NODEV);
    expect(r.data).toBe(`context="${label}"`);
  });
  test('quoted values stay whole among other options', () => {
    expect(parseMountOptions(['discard,context="a:b:c:s0:c1,c2",nodev']).data).toBe('discard,context="a:b:c:s0:c1,c2"');
    expect(parseMountOptions(['context="s0:c1,c2",suid']).flags).toBe(0);
  });
  test('an unbalanced quote is refused', () => {
    expect(mountOptionError(() => parseMountOptions(['context="s0:c1,suid'])).message).toMatch(/unbalanced/);
  });
  test.each(['s0"c1', 'a\nb', 'a\0b'])('label %j is refused whether or not SELinux is on', (label) => {
    mountOptionError(() => mountOptionsFor('ext4', [], label));
    mountOptionError(() => mountOptionsFor('xfs', ['nodev'], label));
  });
  test('a plain label passes', () => {
    expect(mountOptionsFor('ext4', ['nodev'], 'system_u:object_r:container_file_t:s0:c1,c2')[0]).toBe('nodev');
  });
});

describe('storage-opts', () => {
  test('a symlink at the old predictable temp name is not followed', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    const home = join(dir, 'home');
    mkdirSync(home);
    const predictable = join(home, `${STORAGE_OPTS_FILE}.tmp-${process.pid}`);
    symlinkSync(victim, predictable);
    writeRecordedOpts(home, ['dm.basesize=1G']);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(lstatSync(join(home, STORAGE_OPTS_FILE)).isFile()).toBe(true);
    expect(readRecordedOpts(home)).toEqual(['dm.basesize=1G']);
  });
  test('writes leave no temp file and replace the old list', () => {
    const home = join(dir, 'home');
    mkdirSync(home);
    writeRecordedOpts(home, ['dm.fs=xfs']);
    writeRecordedOpts(home, ['dm.fs=ext4']);
    expect(readRecordedOpts(home)).toEqual(['dm.fs=ext4']);
    expect(lstatSync(join(home, STORAGE_OPTS_FILE)).mode & 0o777).toBe(0o600);
    expect(readdirSync(home)).toEqual([STORAGE_OPTS_FILE]);
  });
});
