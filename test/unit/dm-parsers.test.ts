// Table and status parsers against what dmsetup printed in the golden captures, plus every status
// form the kernel can emit and the input the API must refuse before anything reaches the kernel.
import { describe, expect, it } from 'vitest';
import { GOLDEN, command, loadCommands, type GoldenName } from '../support/golden.js';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import { checkDeviceRef, deviceName, deviceUuid, sectors, thinId } from '../../src/dm/names.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { parseThinStatus } from '../../src/dm/status/thin.js';
import {
  checkTable,
  formatTableLine,
  formatTargetParams,
  parseTable,
  parseTableLine,
  parseTarget,
  type Target,
} from '../../src/dm/targets.js';

// `dmsetup table/status <one device>` prints bare lines; `--target`/all-device forms prefix "name: ".
function stdoutLines(n: GoldenName | number): string[] {
  return command(n)
    .stdout.split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^[^\s:]+: /, ''));
}

const commands = loadCommands();

describe('table lines from the golden `dmsetup table` output', () => {
  const tableCommands = commands.filter((c) => /^dmsetup table\b/.test(c.cmd) && c.rc === 0);

  it('covers every dmsetup table command in the captures', () => {
    expect(tableCommands.map((c) => c.n)).toEqual(
      (['tableInactiveEmpty0', 'tableLin0', 'tableAll', 'tableInactiveLin0', 'tableBig0', 'tablePool', 'tableTargetThinPool'] as const).map(
        (name) => GOLDEN[name],
      ),
    );
  });

  for (const c of tableCommands) {
    it(`${c.cmd}: parse -> format -> parse is stable and keeps the kernel's words`, () => {
      const lines = stdoutLines(c.n);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        const t = parseTableLine(line);
        expect(parseTableLine(formatTableLine(t))).toEqual(t);
        // The kernel's text and ours agree word for word, except thin-pool's "0" feature count.
        const words = line.trim().split(/\s+/);
        const ours = formatTableLine(t).split(' ');
        expect(ours).toEqual(t.type === 'thin-pool' && words.at(-1) === '0' ? words.slice(0, -1) : words);
      }
    });
  }

  it('types each golden line', () => {
    expect(parseTableLine(stdoutLines('tableLin0')[0]!)).toEqual({
      type: 'linear',
      startSector: sectors(0n),
      lengthSectors: sectors(2048n),
      device: '7:2',
      offsetSectors: sectors(0n),
    });
    expect(parseTableLine(stdoutLines('tableInactiveEmpty0')[0]!)).toEqual({
      type: 'zero',
      startSector: sectors(0n),
      lengthSectors: sectors(1024n),
    });
    expect(parseTableLine(stdoutLines('tablePool')[0]!)).toEqual({
      type: 'thin-pool',
      startSector: sectors(0n),
      lengthSectors: sectors(2097152n),
      metadataDevice: '7:0',
      dataDevice: '7:1',
      dataBlockSizeSectors: 128,
      lowWaterMarkBlocks: 32768n,
      features: [],
    });
    const big = parseTable(command('tableBig0').stdout);
    expect(big).toHaveLength(2000);
    expect(big[1999]).toEqual({
      type: 'linear',
      startSector: sectors(1999n),
      lengthSectors: sectors(1n),
      device: '7:2',
      offsetSectors: sectors(1999n),
    });
    expect(() => checkTable(big)).not.toThrow();
  });

  it('round-trips the tables dmsetup was given (create/load --table arguments)', () => {
    for (const c of commands.filter((r) => / --table /.test(r.cmd) && r.rc === 0)) {
      const line = c.cmd.split(' --table ')[1]!.replace(/ --\S+.*$/, '');
      const t = parseTableLine(line);
      expect(formatTableLine(t), c.cmd).toBe(line);
    }
  });

  it('formats every typed target and a generic one', () => {
    const cases: [Target, string][] = [
      [
        { type: 'linear', startSector: sectors(0n), lengthSectors: sectors(8n), device: '/dev/loop2', offsetSectors: sectors(2048n) },
        '/dev/loop2 2048',
      ],
      [
        {
          type: 'thin-pool',
          startSector: sectors(0n),
          lengthSectors: sectors(8n),
          metadataDevice: '7:0',
          dataDevice: '7:1',
          dataBlockSizeSectors: 1024,
          lowWaterMarkBlocks: 10n,
          features: ['skip_block_zeroing', 'error_if_no_space'],
        },
        '7:0 7:1 1024 10 2 skip_block_zeroing error_if_no_space',
      ],
      [
        { type: 'thin', startSector: sectors(0n), lengthSectors: sectors(8n), poolDevice: '/dev/mapper/pool', thinId: thinId(16777215) },
        '/dev/mapper/pool 16777215',
      ],
      [
        {
          type: 'thin',
          startSector: sectors(0n),
          lengthSectors: sectors(8n),
          poolDevice: '254:4',
          thinId: thinId(3),
          externalOriginDevice: '7:3',
        },
        '254:4 3 7:3',
      ],
      [{ type: 'error', startSector: sectors(0n), lengthSectors: sectors(8n) }, ''],
      [{ type: 'striped', startSector: sectors(0n), lengthSectors: sectors(8n), params: '2 8 7:1 0 7:2 0' }, '2 8 7:1 0 7:2 0'],
    ];
    for (const [t, params] of cases) {
      expect(formatTargetParams(t)).toBe(params);
      expect(parseTarget(t.type, t.startSector, t.lengthSectors, params)).toEqual(t);
    }
  });

  it('parses a table text with comments and blank lines', () => {
    expect(parseTable('# two halves\n0 8 zero\n\n8 8 error\n')).toEqual([
      { type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) },
      { type: 'error', startSector: sectors(8n), lengthSectors: sectors(8n) },
    ]);
  });
});

describe('thin-pool status', () => {
  it('reads the golden pool status lines (a fresh pool; after set_transaction_id + reserve_metadata_snap)', () => {
    const fresh = stdoutLines('statusPool')[0]!.split(' ').slice(3).join(' ');
    expect(parseThinPoolStatus(fresh)).toEqual({
      state: 'ok',
      transactionId: 0n,
      usedMetadataBlocks: 1649n,
      totalMetadataBlocks: 16384n,
      usedDataBlocks: 0n,
      totalDataBlocks: 16384n,
      heldMetadataRoot: null,
      mode: 'rw',
      discardPassdown: true,
      ignoreDiscard: false,
      noSpaceBehaviour: 'queue',
      needsCheck: false,
      metadataLowWatermark: 1024n,
    });
    const held = stdoutLines('statusPoolHeldRoot')[0]!.split(' ').slice(3).join(' ');
    expect(parseThinPoolStatus(held)).toMatchObject({ state: 'ok', transactionId: 1n, usedMetadataBlocks: 1651n, heldMetadataRoot: 24n });
  });

  it('reads every form the kernel emits', () => {
    expect(parseThinPoolStatus('Fail')).toEqual({ state: 'Fail' });
    expect(parseThinPoolStatus('Error')).toEqual({ state: 'Error' });
    expect(
      parseThinPoolStatus('7 20/4096 16384/16384 - out_of_data_space no_discard_passdown error_if_no_space needs_check 1024 '),
    ).toEqual({
      state: 'ok',
      transactionId: 7n,
      usedMetadataBlocks: 20n,
      totalMetadataBlocks: 4096n,
      usedDataBlocks: 16384n,
      totalDataBlocks: 16384n,
      heldMetadataRoot: null,
      mode: 'out_of_data_space',
      discardPassdown: false,
      ignoreDiscard: false,
      noSpaceBehaviour: 'error',
      needsCheck: true,
      metadataLowWatermark: 1024n,
    });
    expect(parseThinPoolStatus('3 10/100 5/50 99 ro ignore_discard queue_if_no_space - 64')).toMatchObject({
      mode: 'ro',
      heldMetadataRoot: 99n,
      ignoreDiscard: true,
      discardPassdown: false,
      needsCheck: false,
      metadataLowWatermark: 64n,
    });
    // Kernels before the watermark (4.16) and before needs_check/no-space policy.
    const old = parseThinPoolStatus('0 1/10 0/100 - rw discard_passdown queue_if_no_space -');
    expect(old).toMatchObject({ state: 'ok', needsCheck: false });
    expect('metadataLowWatermark' in old).toBe(false);
    expect(parseThinPoolStatus('0 1/10 0/100 - rw no_discard_passdown')).toMatchObject({
      discardPassdown: false,
      noSpaceBehaviour: 'queue',
    });
    expect(parseThinPoolStatus('0 1/10 0/100 - rw')).toMatchObject({ discardPassdown: true });
  });

  it('rejects what is not a pool status', () => {
    for (const bad of [
      '',
      '0 1/10',
      'x 1/10 0/100 - rw',
      '0 110 0/100 - rw',
      '0 1/10 0/100 - rx',
      '0 1/10 0/100 - rw bogus',
      '0 1/10 0/100 ? rw',
    ]) {
      expect(() => parseThinPoolStatus(bad), bad).toThrow(InvalidArgumentError);
    }
  });
});

describe('thin status', () => {
  it('reads the golden thin status (dmsetup status thin0 and --target thin: nothing mapped)', () => {
    for (const line of [...stdoutLines('statusThin0'), ...stdoutLines('statusTargetThin')]) {
      expect(parseThinStatus(line.split(' ').slice(3).join(' '))).toEqual({ state: 'ok', mappedSectors: 0n, highestMappedSector: null });
    }
  });
  it('reads mapped, Fail and Error forms', () => {
    expect(parseThinStatus('2048 4095')).toEqual({ state: 'ok', mappedSectors: 2048n, highestMappedSector: 4095n });
    expect(parseThinStatus('Fail')).toEqual({ state: 'Fail' });
    expect(parseThinStatus('Error')).toEqual({ state: 'Error' });
    for (const bad of ['', '1', '1 2 3', 'a -', '- 1']) expect(() => parseThinStatus(bad), bad).toThrow(InvalidArgumentError);
  });
});

describe('bad input is refused with InvalidArgumentError', () => {
  const refuses = (f: () => unknown, message: RegExp): void => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('EINVAL');
    expect((err as Error).message).toMatch(message);
  };

  it('names', () => {
    expect(deviceName('a'.repeat(127))).toHaveLength(127);
    refuses(() => deviceName('a'.repeat(128)), /device name .*128 bytes, the kernel allows 127/);
    refuses(() => deviceName('é'.repeat(64)), /128 bytes/);
    refuses(() => deviceName('a/b'), /contains '\/'/);
    refuses(() => deviceName(''), /empty/);
    refuses(() => deviceName('..'), /not names/);
    expect(deviceUuid('u'.repeat(128))).toHaveLength(128);
    refuses(() => deviceUuid('u'.repeat(129)), /device uuid .*129 bytes/);
    refuses(() => checkDeviceRef({ dev: { major: 4096, minor: 0 } }), /major/);
  });

  it('numbers', () => {
    expect(thinId(2 ** 24 - 1)).toBe(16777215);
    refuses(() => thinId(2 ** 24), /thin id 16777216: must be an integer in 0..16777215/);
    refuses(() => thinId(-1), /thin id/);
    refuses(() => thinId(1.5), /thin id/);
    expect(sectors(5)).toBe(5n);
    refuses(() => sectors(-1n), /negative/);
    refuses(() => sectors(2n ** 64n), /64 bits/);
  });

  it('table lines', () => {
    refuses(() => parseTableLine('0 2048'), /table line "0 2048"/);
    refuses(() => parseTableLine('x 2048 zero'), /start sector x/);
    refuses(() => parseTableLine('0 2048 linear /dev/loop2'), /linear target parameters .*<device> <offset>/);
    refuses(() => parseTableLine('0 2048 linear /dev/loop2 -5'), /offset must be a non-negative integer/);
    refuses(() => parseTableLine('0 8 thin /dev/mapper/pool 16777216'), /thin id/);
    refuses(() => parseTableLine('0 8 thin-pool 7:0 7:1 100 10'), /data block size/);
    refuses(() => parseTableLine('0 8 thin-pool 7:0 7:1 128 10 2 skip_block_zeroing'), /feature count 2/);
    refuses(() => parseTableLine('0 8 zero extra'), /no parameters/);
    refuses(() => parseTableLine('0 8 averyveryverylongtype x'), /target type/);
    refuses(() => checkTable([{ type: 'zero', startSector: sectors(8n), lengthSectors: sectors(8n) }]), /contiguous/);
  });
});
