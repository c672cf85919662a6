import { defineConfig } from 'vitest/config';

// Three tiers (docs/testing.md): unit runs anywhere; host needs root and loop devices;
// kernel needs a real device-mapper (inside the project's guest on hosts without one).
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
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
