import type { ServingDefaults } from '../../src/repository/serving.js';

/** Batching defaults for the serving.json parser's tests: what the server's settings give a model folder. */
export const SERVING_DEFAULTS: ServingDefaults = {
  max_batch_size: 8,
  max_queue_delay_ms: 2,
  max_queue_size: 64,
  instances: 1,
  max_batch_tokens: 4096,
  length_buckets: [16, 32],
  warmup: 'all',
  weights: 'auto',
};
