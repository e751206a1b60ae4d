/** JSON schemas shared by several route plugins. */

export const timingSchema = {
  type: 'object',
  description:
    'Milliseconds per phase (also sent as x-*-time headers). queue/inference: the slowest row of the request.',
  properties: {
    preprocess_ms: { type: 'number' },
    queue_ms: { type: 'number' },
    inference_ms: { type: 'number' },
    postprocess_ms: { type: 'number' },
    total_ms: { type: 'number' },
    batch_size: { type: 'integer', description: 'Rows in the (largest) batch the request ran in' },
  },
} as const;

export const modelNameParam = {
  type: 'string',
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
} as const;
export const versionParam = { type: 'string', pattern: '^[1-9][0-9]{0,8}$' } as const;
