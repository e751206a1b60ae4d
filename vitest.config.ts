import { defineConfig } from 'vitest/config';
import { scaledMs } from './test/support/time-limits.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // 120 s and 300 s on an idle machine, longer under load (test/support/time-limits.ts): limits catch hangs only.
    testTimeout: scaledMs(12_000),
    hookTimeout: scaledMs(30_000),
    // Tests load real onnxruntime sessions; two cores in CI, so keep file-level parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
