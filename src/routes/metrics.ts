/** `GET /metrics`: Prometheus text exposition of the server's registry. */
import type { FastifyInstance } from 'fastify';

export async function metricsPlugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        tags: ['observability'],
        produces: ['text/plain'],
        response: { 200: { type: 'string' } },
      },
    },
    async (_req, reply) => {
      const { contentType, body } = await ctx.metrics.render();
      return reply.type(contentType).send(body);
    },
  );
}
