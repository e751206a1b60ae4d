import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Tests load real onnxruntime sessions; two cores in CI, so keep file-level parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
