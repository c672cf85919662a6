// The DM command table against the kernel's header and against what libdevmapper sent: every name
// and table derived from it agrees with it, and the golden captures agree with the table.
import { describe, expect, test } from 'vitest';
import {
  DM_COMMANDS,
  DM_COMMAND_LIST,
  DM_COMMAND_MIN_VERSION,
  DM_IOCTL,
  DM_IOCTL_SIZE,
  DmCmd,
  _IOC_READ,
  _IOC_WRITE,
  dmCommandName,
  dmRequest,
  iocFields,
  parseDmCommand,
} from '../../src/structs/index.js';
import * as dmIoctl from '../../src/structs/dm-ioctl.js';
import { dmRecords } from '../support/golden.js';

describe('DM_COMMANDS', () => {
  test("the 18 commands of enum dm_cmd_index, numbered 0..17 in the header's order", () => {
    expect(DM_COMMAND_LIST.map((c) => c.name)).toEqual([
      'DM_VERSION',
      'DM_REMOVE_ALL',
      'DM_LIST_DEVICES',
      'DM_DEV_CREATE',
      'DM_DEV_REMOVE',
      'DM_DEV_RENAME',
      'DM_DEV_SUSPEND',
      'DM_DEV_STATUS',
      'DM_DEV_WAIT',
      'DM_TABLE_LOAD',
      'DM_TABLE_CLEAR',
      'DM_TABLE_DEPS',
      'DM_TABLE_STATUS',
      'DM_LIST_VERSIONS',
      'DM_TARGET_MSG',
      'DM_DEV_SET_GEOMETRY',
      'DM_DEV_ARM_POLL',
      'DM_GET_TARGET_VERSION',
    ]);
    DM_COMMAND_LIST.forEach((c, nr) => {
      expect(c.nr).toBe(nr);
      expect(DM_COMMANDS[c.name]).toBe(c);
    });
  });

  test('each request is _IOWR(DM_IOCTL, nr, struct dm_ioctl)', () => {
    for (const c of DM_COMMAND_LIST) {
      expect(iocFields(c.request)).toEqual({ dir: _IOC_READ | _IOC_WRITE, type: DM_IOCTL, nr: c.nr, size: DM_IOCTL_SIZE });
      expect(dmRequest(c.nr)).toBe(c.request);
    }
  });

  test("DmCmd, DM_COMMAND_MIN_VERSION and dmCommandName are the table's, also where dm-ioctl.ts exports them", () => {
    for (const c of DM_COMMAND_LIST) {
      expect(DmCmd[c.name]).toBe(c.nr);
      expect(DM_COMMAND_MIN_VERSION[c.name]).toBe(c.version);
      expect(dmCommandName(c.nr)).toBe(c.name);
      expect(parseDmCommand(String(c.nr))).toBe(c.name);
    }
    expect(Object.keys(DmCmd)).toHaveLength(DM_COMMAND_LIST.length);
    expect(dmCommandName(DM_COMMAND_LIST.length)).toBeUndefined();
    expect(dmCommandName(-1)).toBeUndefined();
    expect(dmIoctl.DmCmd).toBe(DmCmd);
    expect(dmIoctl.DM_COMMAND_MIN_VERSION).toBe(DM_COMMAND_MIN_VERSION);
    expect(dmIoctl.dmRequest).toBe(dmRequest);
  });

  test('a command returns data exactly when it has a reply codec', () => {
    for (const c of DM_COMMAND_LIST) expect(c.replyPayload !== undefined).toBe(c.returnsData);
    expect(DM_COMMAND_LIST.filter((c) => c.returnsData).map((c) => c.name)).toEqual([
      'DM_LIST_DEVICES',
      'DM_DEV_WAIT',
      'DM_TABLE_DEPS',
      'DM_TABLE_STATUS',
      'DM_LIST_VERSIONS',
      'DM_TARGET_MSG',
      'DM_GET_TARGET_VERSION',
    ]);
  });

  test("libdevmapper sent every captured command with the table's request number and minimum version", () => {
    const seen = new Set<string>();
    for (const rec of dmRecords()) {
      const c = DM_COMMANDS[rec.req_name as keyof typeof DM_COMMANDS];
      expect(c, rec.req_name).toBeDefined();
      expect(rec.req >>> 0).toBe(c.request);
      expect(rec.dm_before?.version).toEqual(c.version);
      seen.add(c.name);
    }
    // Every command but DM_DEV_ARM_POLL is in the captures.
    expect(DM_COMMAND_LIST.filter((c) => !seen.has(c.name)).map((c) => c.name)).toEqual(['DM_DEV_ARM_POLL']);
  });
});
