// The executable: the package's `devmapper` (built into dist/cli/devmapper.cjs, which npm links
// onto PATH) and what a checkout's bin/devmapper loads. It runs the CLI on this process's
// arguments, writing to descriptors 1 and 2 rather than through process.stdout/stderr (stdio.ts).
import { main } from './main.js';
import { writeErr, writeToDescriptors } from './stdio.js';

writeToDescriptors();
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    writeErr(`devmapper: ${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
