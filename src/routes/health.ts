/**
 * Liveness and readiness (V2 paths, used by Kubernetes probes and the container HEALTHCHECK). Live: the process
 * answers. Ready: see src/inference/v2-models.ts `serverReady` (policy `all`: every model loaded and warmed;
 * `lazy`: no model's last load failed), and not draining. False is 400, as the V2 protocol's health convention
 * says ("a 4xx status code indicates false") and Triton answers; the JSON body stays for operators (the Open
 * Inference Protocol's `$ready_server_response` is JSON too). Kubernetes probes fail on any status ≥ 400.
 */
import type { FastifyInstance } from 'fastify';
import { serverReady } from '../inference/v2-models.js';

const liveBody = { type: 'object', properties: { live: { type: 'boolean' } } } as const;
const readyBody = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    draining: { type: 'boolean' },
    models: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        properties: {
          loaded: { type: 'array', items: { type: 'integer' } },
          loading: { type: 'boolean' },
          error: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;

export async function healthPlugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  app.get(
    '/v2/health/live',
    { schema: { summary: 'Liveness', tags: ['health'], response: { 200: liveBody } } },
    async () => ({ live: true }),
  );
  app.get(
    '/v2/health/ready',
    {
      schema: {
        summary:
          'Readiness: 200 when every model is ready (lazy policy: none failed to load) and the server is not draining, else 400',
        tags: ['health'],
        response: { 200: readyBody, 400: readyBody },
      },
    },
    async (_req, reply) => {
      const r = serverReady(ctx);
      return reply.code(r.ready ? 200 : 400).send(r);
    },
  );
}
