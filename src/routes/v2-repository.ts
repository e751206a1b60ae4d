/**
 * Triton's model repository extension over HTTP: `POST /v2/repository/index` (open, like model metadata) and
 * `POST /v2/repository/models/:model/load|unload` (need `Authorization: Bearer <admin token>`, like /admin; 403
 * `admin_api_off` when no admin token is configured). Load warms the new versions before swapping them in;
 * unload lets queued requests finish. Load parameters (`config`, `file:*`) are refused: padserve loads what the
 * repository folder holds. Registered inside the V2 plugin, so bodies may be gzip / deflate too.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidInput, ServeError } from '../observability/errors.js';
import { repositoryIndex } from '../inference/v2-models.js';
import { bearerMatches } from '../inference/bearer.js';
import { errorResponses } from './errors.js';
import { modelNameParam } from './schemas.js';

/** The optional JSON body of a repository request (an object), or {} when empty. */
function jsonBody(req: FastifyRequest): Record<string, unknown> {
  const raw = req.body;
  if (raw === undefined || raw === null || (Buffer.isBuffer(raw) && raw.length === 0)) return {};
  let v: unknown;
  try {
    v = JSON.parse(Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw));
  } catch (err) {
    throw invalidInput('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalidInput('invalid_request', 'request body must be a JSON object');
  return v as Record<string, unknown>;
}

function onlyKeys(where: string, obj: Record<string, unknown>, known: string[]): void {
  for (const k of Object.keys(obj))
    if (!known.includes(k))
      throw invalidInput(
        'unsupported_parameter',
        `${where} "${k}" is not supported${known.length ? ` (supported: ${known.join(', ')})` : ''}`,
      );
}

export async function v2RepositoryPlugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;

  app.post(
    '/v2/repository/index',
    {
      schema: {
        summary: 'Every model of the repository and its state (Triton model repository extension)',
        tags: ['v2'],
        response: {
          200: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                name: { type: 'string' },
                version: { type: 'string' },
                state: { type: 'string' },
                reason: { type: 'string' },
              },
            },
          },
          ...errorResponses(400),
        },
      },
    },
    async (req) => {
      const body = jsonBody(req);
      onlyKeys('index request field', body, ['ready']);
      if (body.ready !== undefined && typeof body.ready !== 'boolean')
        throw invalidInput('invalid_request', '"ready" must be a boolean');
      return repositoryIndex(ctx, body.ready === true);
    },
  );

  const control = (summary: string) => ({
    schema: {
      summary,
      tags: ['v2'],
      security: [{ bearer: [] }],
      params: { type: 'object', required: ['model'], properties: { model: modelNameParam } },
      response: {
        200: { type: 'null', description: 'done (empty body)' },
        ...errorResponses(400, 401, 404, 500, 503),
      },
    },
    onRequest: async (req: FastifyRequest) => {
      if (!ctx.adminToken)
        throw new ServeError(
          'unauthorized',
          'admin_api_off',
          'model control is off: start padserve with an admin token (PADSERVE_ADMIN_TOKEN)',
          { status: 403 },
        );
      if (!bearerMatches(req.headers.authorization, ctx.adminToken))
        throw new ServeError('unauthorized', 'unauthorized', 'model control: missing or wrong bearer token');
    },
  });

  app.post<{ Params: { model: string } }>(
    '/v2/repository/models/:model/load',
    control('Load (or reload) a model from the repository: warm, then swap'),
    async (req, reply) => {
      const body = jsonBody(req);
      onlyKeys('load request field', body, ['parameters']);
      const params = body.parameters;
      if (params !== undefined) {
        if (typeof params !== 'object' || params === null || Array.isArray(params))
          throw invalidInput('invalid_request', '"parameters" must be an object');
        onlyKeys('load parameter', params as Record<string, unknown>, []);
      }
      await ctx.models.load(req.params.model);
      return reply.code(200).send();
    },
  );

  app.post<{ Params: { model: string } }>(
    '/v2/repository/models/:model/unload',
    control('Unload a model after its queued requests finish'),
    async (req, reply) => {
      const body = jsonBody(req);
      onlyKeys('unload request field', body, ['parameters']);
      const params = (body.parameters ?? {}) as Record<string, unknown>;
      if (typeof params !== 'object' || params === null || Array.isArray(params))
        throw invalidInput('invalid_request', '"parameters" must be an object');
      // padserve has no ensembles, so there are never dependents to unload: the flag is accepted as a no-op.
      onlyKeys('unload parameter', params, ['unload_dependents']);
      if (params.unload_dependents !== undefined && typeof params.unload_dependents !== 'boolean')
        throw invalidInput('invalid_request', '"unload_dependents" must be a boolean');
      await ctx.models.unload(req.params.model);
      return reply.code(200).send();
    },
  );
}
