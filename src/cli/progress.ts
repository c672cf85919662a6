// Progress lines for long work (mkfs, discards, writing files): printed only when a person watches
// (stdout is a terminal, or DEVMAPPER_PROGRESS=1, which scripts/demo sets when it boots the guest
// from a terminal); silent otherwise, so that piped output holds only results.

import { isatty } from 'node:tty';
import { writeOut } from './stdio.js';

export function progressWanted(): boolean {
  if (process.env['DEVMAPPER_PROGRESS'] === '0') return false;
  // isatty(1), not process.stdout.isTTY: that getter builds Node's stdout stream, which the CLI's
  // writes to fd 1 (stdio.ts) never need.
  return isatty(1) || process.env['DEVMAPPER_PROGRESS'] === '1';
}

export class Progress {
  constructor(
    readonly enabled: boolean = progressWanted(),
    private readonly write: (text: string) => void = writeOut,
  ) {}

  /** A line that needs no end. */
  note(text: string): void {
    if (this.enabled) this.write(`${text}\n`);
  }

  /** Starts a step (`text ...`); the returned function ends its line with the time it took. */
  begin(text: string): () => void {
    if (!this.enabled) return () => undefined;
    const start = process.hrtime.bigint();
    this.write(`${text} ...`);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.write(` ${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(1)} s\n`);
    };
  }

  /** Runs `fn` as one step; a failure ends the line with 'failed' before it propagates. */
  async step<T>(text: string, fn: () => Promise<T> | T): Promise<T> {
    if (!this.enabled) return fn();
    const end = this.begin(text);
    try {
      const r = await fn();
      end();
      return r;
    } catch (e) {
      this.write(' failed\n');
      throw e;
    }
  }
}
