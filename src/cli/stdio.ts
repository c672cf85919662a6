// Where the CLI's text goes. The executable (bin.ts) writes straight to file descriptors 1 and 2
// with write(2): touching process.stdout or process.stderr loads node:net and the whole streams
// stack (for a pipe, a file or /dev/null alike), a large part of a cold `devmapper dm ls` on a small
// host (bench P3). main() called in a program (tests) keeps the streams, which callers may capture.
import { writeSync } from 'node:fs';

let direct = false;
/** Descriptors whose reader has gone (EPIPE): what is left to say is not wanted. */
const gone = new Set<number>();
let pause: Int32Array | undefined;

/** From now on, the CLI's output is written with write(2) on 1 and 2 (the executable's choice). */
export function writeToDescriptors(): void {
  direct = true;
}

function writeAll(fd: 1 | 2, text: string): void {
  if (gone.has(fd)) return;
  let buf = Buffer.from(text, 'utf8');
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        // A non-blocking pipe (its other end set O_NONBLOCK) that is full: wait for the reader.
        pause ??= new Int32Array(new SharedArrayBuffer(4));
        Atomics.wait(pause, 0, 0, 1);
      } else if (code === 'EPIPE') {
        // The reader stopped (`devmapper dm ls | head -1`): quiet, as a CLI that SIGPIPE ends.
        gone.add(fd);
        return;
      } else {
        throw err;
      }
    }
  }
}

/** Standard output. */
export function writeOut(text: string): void {
  if (direct) writeAll(1, text);
  else process.stdout.write(text);
}

/** Standard error. */
export function writeErr(text: string): void {
  if (direct) writeAll(2, text);
  else process.stderr.write(text);
}
