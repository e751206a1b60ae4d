import { defineConfig } from 'vitest/config';

// `npm run test:container` only: `npm test` (./vitest.config.ts) includes test/**/*.test.ts, not this folder.
// One file, one container; the beforeAll may build the base image and the image from scratch (minutes).
export default defineConfig({
  test: {
    include: ['test-container/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 3_600_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
