/**
 * The fastify application: decorators, the cross-cutting hooks, one plugin per route family, and the OpenAPI
 * document generated from the routes' schemas (`GET /openapi.json`). Built by `server/main.ts` for serving and
 * by tests for `inject()`.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import swagger from '@fastify/swagger';
import type { ServerConfig } from './config.js';
import { loggerOptions, requestId } from '../src/observability/logging.js';
import type { MetricsService, ModelService, PreprocessService } from '../src/inference/v2-context.js';
import type { Lifecycle, ServerContext } from '../src/inference/server-context.js';
import { capConnections, hooksPlugin } from '../src/routes/hooks.js';
import { httpServeError } from '../src/routes/errors.js';
import { errorBody } from '../src/observability/errors.js';
import { healthPlugin } from '../src/routes/health.js';
import { metricsPlugin } from '../src/routes/metrics.js';
import { classifyPlugin } from '../src/routes/classify.js';
import { gluePlugin } from '../src/routes/glue.js';
import { v2Plugin } from '../src/routes/v2.js';
import { adminPlugin } from '../src/routes/admin.js';

/**
 * What the app needs: settings and the services behind their narrow interfaces (src/inference/v2-context.ts).
 * server/main.ts passes the real manager, pools and metrics; test/http/routes-fakes.test.ts passes fakes.
 */
export interface AppDeps {
  config: ServerConfig;
  models: ModelService;
  preprocess: PreprocessService;
  metrics: MetricsService;
  version: string;
  lifecycle?: Lifecycle;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    logger: loggerOptions(config.logLevel),
    genReqId: requestId,
    requestIdHeader: false,
    bodyLimit: config.maxBodyBytes,
    // Draining is answered by our own hooks (JSON 503 `shutting_down`), not fastify's plain 503.
    return503OnClosing: false,
    // Time to receive a whole request: a client that trickles its body is cut off (Node answers 408).
    requestTimeout: config.receiveTimeoutMs,
    // Node checks that timeout every `connectionsCheckingInterval` ms; its default (30 s) would let a trickling
    // client stay far past a short timeout.
    http: {
      connectionsCheckingInterval:
        config.receiveTimeoutMs > 0 ? Math.min(1000, config.receiveTimeoutMs) : 30_000,
    },
    ajv: { customOptions: { allErrors: false, allowUnionTypes: true } },
    // Errors the router raises before any route or hook (a path parameter over the router's length limit, a
    // malformed URL): the same JSON error body as everywhere else, not fastify's own shape.
    frameworkErrors: (err, _req, reply) => {
      const { error } = httpServeError(err);
      void (reply as unknown as FastifyReply)
        .code(error.status)
        .header('x-content-type-options', 'nosniff')
        .type('application/json')
        .send(errorBody(error));
    },
  });
  const ctx: ServerContext = {
    models: deps.models,
    metrics: deps.metrics,
    preprocess: deps.preprocess,
    limits: {
      requestTimeoutMs: config.requestTimeoutMs,
      maxBodyBytes: config.maxBodyBytes,
      maxTextChars: config.maxTextChars,
      maxPairsPerRequest: config.maxPairsPerRequest,
      defaultImageModel: config.defaultImageModel,
      retryAfterS: config.retryAfterS,
    },
    lifecycle: deps.lifecycle ?? { draining: false, inflight: 0 },
    adminToken: config.adminToken,
    apiToken: config.apiToken,
    version: deps.version,
  };
  app.decorate('padserve', ctx);
  // Connection limits on the Node server (fastify does not take these as options). Not `server.maxConnections`:
  // Node destroys the sockets beyond it, and their clients see ECONNRESET instead of an answer (hooks.ts answers
  // them). Node enforces the request timeout only when the headers timeout (default 60 s) is not longer than it.
  if (config.maxConnections > 0) capConnections(app.server, config.maxConnections);
  if (config.receiveTimeoutMs > 0)
    app.server.headersTimeout = Math.min(app.server.headersTimeout, config.receiveTimeoutMs);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'padserve',
        version: deps.version,
        description:
          'Inference server for PAD-Net models: image classification, GLUE tasks and the Open Inference Protocol V2.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      tags: [
        { name: 'tasks', description: 'Task routes' },
        { name: 'v2', description: 'Open Inference Protocol V2' },
        { name: 'health', description: 'Liveness and readiness' },
        { name: 'observability', description: 'Metrics' },
        { name: 'admin', description: 'Model control (needs the admin token)' },
      ],
    },
  });
  await app.register(hooksPlugin);
  await app.register(healthPlugin);
  await app.register(metricsPlugin);
  await app.register(classifyPlugin);
  await app.register(gluePlugin);
  await app.register(v2Plugin);
  await app.register(adminPlugin);
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
