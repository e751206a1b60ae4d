/**
 * Model control (`POST /admin/models/:name/load|unload|reload`, `GET /admin/models`). Registered only when an
 * admin token is configured; requests need `Authorization: Bearer <token>` (compared in constant time:
 * src/inference/bearer.ts). Load/reload warm the new version set before swapping it in; unload lets queued
 * requests finish first.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bearerMatches } from '../inference/bearer.js';
import { ServeError, unknownModel } from '../observability/errors.js';
import { errorResponses } from './errors.js';
import { modelNameParam } from './schemas.js';

const statusBody = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    loaded: { type: 'array', items: { type: 'integer' } },
    served: { type: 'array', items: { type: 'integer' } },
    loading: { type: 'boolean' },
    error: { type: ['string', 'null'] },
    held: { type: 'boolean' },
  },
} as const;

export async function adminPlugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  if (!ctx.adminToken) return;
  app.addHook('onRequest', async (req: FastifyRequest) => {
    if (!bearerMatches(req.headers.authorization, ctx.adminToken)) {
      throw new ServeError('unauthorized', 'unauthorized', 'admin API: missing or wrong bearer token');
    }
  });
  const describe = (name: string) => {
    const s = ctx.models.status(name);
    if (!s) throw unknownModel(name);
    return { name, served: ctx.models.entry(name)?.served ?? [], ...s };
  };
  const schema = (summary: string) => ({
    summary,
    tags: ['admin'],
    security: [{ bearer: [] }],
    params: { type: 'object', required: ['name'], properties: { name: modelNameParam } },
    response: { 200: statusBody, ...errorResponses(401, 404, 500, 503) },
  });
  app.get(
    '/admin/models',
    {
      schema: {
        summary: 'Models and their state',
        tags: ['admin'],
        security: [{ bearer: [] }],
        response: { 200: { type: 'array', items: statusBody }, ...errorResponses(401) },
      },
    },
    async () => ctx.models.names().map(describe),
  );
  app.post<{ Params: { name: string } }>(
    '/admin/models/:name/load',
    { schema: schema('Load (or reload) a model: warm, then swap') },
    async (req) => {
      await ctx.models.load(req.params.name);
      return describe(req.params.name);
    },
  );
  app.post<{ Params: { name: string } }>(
    '/admin/models/:name/reload',
    {
      schema: schema('Reload a model from its folder: the new versions warm, then swap; the old ones drain'),
    },
    async (req) => {
      await ctx.models.load(req.params.name);
      return describe(req.params.name);
    },
  );
  app.post<{ Params: { name: string } }>(
    '/admin/models/:name/unload',
    { schema: schema('Unload a model after its queued requests finish') },
    async (req) => {
      await ctx.models.unload(req.params.name);
      return describe(req.params.name);
    },
  );
}
