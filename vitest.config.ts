import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 180_000,
    // The real-server test starts Apache, nginx and tcpdump: keep files from fighting over ports.
    fileParallelism: true,
    pool: 'forks',
  },
});
