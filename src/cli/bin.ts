// The executable: the package's `devmapper` (built into dist/cli/devmapper.cjs, which npm links
// onto PATH) and what a checkout's bin/devmapper loads. It runs the CLI on this process's
// arguments, writing to descriptors 1 and 2 rather than through process.stdout/stderr (stdio.ts).
//
// The build makes two bundles of this file. devmapper.cjs leaves out the commands marked
// `separate` in main.ts's table (the thin pool's code, most of the CLI): V8 parses every function
// of a script it compiles, lazily compiled or not, and on a small host that parse is most of what
// the bundle costs `devmapper dm ls`. Those commands run in devmapper-full.cjs, the whole CLI,
// which this process loads instead of running main() itself: one copy of each module runs.
import { createRequire } from 'node:module';
import { dispatchedCommand, main } from './main.js';
import { writeErr, writeToDescriptors } from './stdio.js';

/** The whole CLI's bundle beside this one; defined by scripts/build in devmapper.cjs only. */
declare const DEVMAPPER_FULL_CLI: string | undefined;

const argv = process.argv.slice(2);
if (typeof DEVMAPPER_FULL_CLI === 'string' && dispatchedCommand(argv)?.separate) {
  createRequire(import.meta.url)(DEVMAPPER_FULL_CLI); // runs the command line itself
} else {
  writeToDescriptors();
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      writeErr(`devmapper: ${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
