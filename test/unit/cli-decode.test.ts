// `devmapper decode` through the real binary (bin/devmapper, tsx when there is no dist/).
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { recordsOf, type GoldenBufRecord } from '../support/golden.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = resolve(root, 'bin', 'devmapper');

function devmapper(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { cwd: root, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The capture's hex as stored: trailing zero bytes stripped. */
function strippedHex(rec: GoldenBufRecord, which: 'before' | 'after'): string {
  let end = rec[which].length;
  while (end > 0 && rec[which][end - 1] === 0) end--;
  return Buffer.from(rec[which].subarray(0, end)).toString('hex');
}

function golden(n: number, cmd: string, index = 0): GoldenBufRecord {
  const rec = recordsOf(n).filter((r) => r.req_name === cmd)[index];
  if (rec?.kind !== 'buf') throw new Error(`no ${cmd} in command ${n}`);
  return rec;
}

describe('devmapper decode', () => {
  test('LIST_DEVICES reply (dmsetup ls, command 29)', () => {
    const r = devmapper('decode', 'DM_LIST_DEVICES', strippedHex(golden(29, 'DM_LIST_DEVICES'), 'after'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.header.version).toEqual([4, 47, 0]);
    expect(out.header.flag_names).toEqual(['DM_EXISTS_FLAG']);
    expect(
      out.payload.devices.map((d: { name: string; dev: { major: number; minor: number } }) => `${d.name} ${d.dev.major}:${d.dev.minor}`),
    ).toEqual(['empty0 254:2', 'lin0 254:0', 'lin2 254:1']);
    expect(out.payload.devices[0].dev).toEqual({ major: 254, minor: 2 });
  });

  test('TABLE_STATUS reply by short name and by number (dmsetup status pool, command 66)', () => {
    const hex = strippedHex(golden(66, 'DM_TABLE_STATUS'), 'after');
    for (const name of ['TABLE_STATUS', '12']) {
      const r = devmapper('decode', name, hex);
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.command).toBe('DM_TABLE_STATUS');
      expect(out.payload.specs).toEqual([
        expect.objectContaining({
          sector_start: '0', // bigints as decimal strings
          length: '2097152',
          target_type: 'thin-pool',
          params: '0 1649/16384 0/16384 - rw discard_passdown queue_if_no_space - 1024 ',
        }),
      ]);
    }
  });

  test('TABLE_LOAD request with --request (command 65)', () => {
    const r = devmapper('decode', 'DM_TABLE_LOAD', strippedHex(golden(65, 'DM_TABLE_LOAD'), 'before'), '--request');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.direction).toBe('request');
    expect(out.header.flag_names).toEqual(['DM_EXISTS_FLAG', 'DM_PERSISTENT_DEV_FLAG']);
    expect(out.payload.specs[0]).toMatchObject({ next: 72, target_type: 'thin-pool', params: '/dev/loop0 /dev/loop1 128 32768' });
  });

  test('a DM_BUFFER_FULL_FLAG reply says so (command 62)', () => {
    const r = devmapper('decode', 'DM_TABLE_STATUS', strippedHex(golden(62, 'DM_TABLE_STATUS'), 'after'));
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ buffer_full: true, payload: null });
  });

  test('usage errors exit 2 with one line', () => {
    const bad = devmapper('decode', 'DM_NO_SUCH', '00');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe("devmapper decode: unknown dm command 'DM_NO_SUCH' (try 'devmapper decode --help')\n");
    expect(devmapper('decode', 'DM_VERSION', 'xyz').status).toBe(2);
    expect(devmapper('decode').status).toBe(2);
    expect(devmapper('nosuchcommand').status).toBe(2);
  });

  test('an undecodable buffer exits 1 with the DecodeError', () => {
    const r = devmapper('decode', 'DM_VERSION', '00');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^devmapper decode: dm_ioctl at offset \d+: /);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('--help exits 0', () => {
    expect(devmapper('--help').status).toBe(0);
    expect(devmapper('decode', '--help').stdout).toContain('usage: devmapper decode');
  });
});
