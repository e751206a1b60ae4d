/**
 * Liveness and readiness (V2 paths, used by Kubernetes probes and the container HEALTHCHECK). Live: the process
 * answers. Ready: models loaded and warmed (policy `all`), and not draining.
 */
import type { FastifyInstance } from 'fastify';

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
          'Readiness: 200 when every model is loaded and warmed and the server is not draining, else 503',
        tags: ['health'],
        response: { 200: readyBody, 503: readyBody },
      },
    },
    async (_req, reply) => {
      const ready = ctx.models.ready() && !ctx.lifecycle.draining;
      const models: Record<string, { loaded: number[]; loading: boolean; error: string | null }> = {};
      for (const name of ctx.models.names()) {
        const s = ctx.models.status(name)!;
        models[name] = { loaded: s.loaded, loading: s.loading, error: s.error };
      }
      return reply.code(ready ? 200 : 503).send({ ready, draining: ctx.lifecycle.draining, models });
    },
  );
}
