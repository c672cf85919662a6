import { defineConfig } from 'vitest/config';

// Three tiers (docs/testing.md): unit runs anywhere; host needs root and loop devices;
// kernel needs a real device-mapper (inside the project's guest on hosts without one). Unit tests that
// start the CLI or pack the package spawn node: 30 s leaves room for a busy 2-core machine.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 30_000 } },
      { test: { name: 'host', include: ['test/host/**/*.test.ts'], fileParallelism: false, testTimeout: 60_000 } },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
