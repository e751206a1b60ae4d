/**
 * Open Inference Protocol V2 over HTTP (KServe / Triton REST): server metadata, model metadata, readiness, Triton
 * model configuration and statistics, the model list, and inference with JSON tensors, Triton's binary tensor
 * extension (incl. raw binary requests, `Inference-Header-Content-Length: 0`) and gzip / deflate request bodies.
 * The protocol itself lives in src/inference/ (shared with gRPC); this plugin only translates HTTP to and from
 * it. Health endpoints live in health.ts, the repository extension in v2-repository.ts.
 */
import { promisify } from 'node:util';
import { gunzip, inflate, inflateRaw } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { invalidInput, ServeError } from '../observability/errors.js';
import {
  decodeInputs,
  encodeResponse,
  splitBinaryBody,
  V2_DATATYPES,
  type V2RequestJson,
} from '../inference/v2-codec.js';
import { inferV2, maxElements } from '../inference/v2-infer.js';
import {
  modelConfig,
  modelMetadata,
  modelNames,
  modelReady,
  modelStatistics,
  serverMetadata,
  servedEntry,
} from '../inference/v2-models.js';
import { familyOf } from '../repository/family.js';
import { imageRowShape } from '../repository/model.js';
import type { ServerContext } from '../inference/server-context.js';
import { trackOf } from './context.js';
import { errorResponses } from './errors.js';
import { modelNameParam, versionParam } from './schemas.js';
import { v2RepositoryPlugin } from './v2-repository.js';

const tensorMeta = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    datatype: { type: 'string' },
    shape: { type: 'array', items: { type: 'integer' } },
  },
} as const;

const metadataSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    versions: { type: 'array', items: { type: 'string' } },
    platform: { type: 'string' },
    inputs: { type: 'array', items: tensorMeta },
    outputs: { type: 'array', items: tensorMeta },
    parameters: { type: 'object', additionalProperties: true },
  },
} as const;

const inferBody = {
  type: 'object',
  required: ['inputs'],
  properties: {
    id: { type: 'string' },
    parameters: { type: 'object', additionalProperties: true },
    inputs: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype'],
        properties: {
          name: { type: 'string', minLength: 1 },
          shape: { type: 'array', items: {} },
          datatype: { type: 'string', enum: V2_DATATYPES },
          parameters: { type: 'object', additionalProperties: true },
          data: {},
        },
      },
    },
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name'],
        properties: { name: { type: 'string' }, parameters: { type: 'object', additionalProperties: true } },
      },
    },
  },
} as const;

const inferResponse = {
  type: 'object',
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    id: { type: 'string' },
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          ...tensorMeta.properties,
          data: { type: 'array', items: { type: ['number', 'string'] } },
          parameters: { type: 'object', additionalProperties: true },
        },
      },
    },
  },
} as const;

const anyObject = { type: 'object', additionalProperties: true } as const;

type ModelParams = { model: string; version?: string };

function parseVersion(v: string | undefined): number | undefined {
  return v === undefined ? undefined : Number(v);
}

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const inflateRawAsync = promisify(inflateRaw);

/**
 * A request body as sent (`Content-Encoding` absent / identity) or decompressed (gzip, deflate: zlib-wrapped
 * as RFC 9110 says, raw deflate accepted too). The decompressed size is held to the body limit, so a small
 * compressed bomb stops at `maxBytes` (413) instead of filling memory.
 */
export async function decodeContent(
  body: Buffer,
  encoding: string | string[] | undefined,
  maxBytes: number,
): Promise<Buffer> {
  const e = (Array.isArray(encoding) ? encoding.join(',') : (encoding ?? '')).trim().toLowerCase();
  if (e === '' || e === 'identity') return body;
  const opts = { maxOutputLength: maxBytes };
  try {
    if (e === 'gzip' || e === 'x-gzip') return await gunzipAsync(body, opts);
    if (e === 'deflate')
      return await inflateAsync(body, opts).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'Z_DATA_ERROR') return inflateRawAsync(body, opts);
        throw err;
      });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      throw new ServeError(
        'payload_too_large',
        'body_too_large',
        `decompressed request body exceeds ${maxBytes} bytes`,
        { details: { limit: maxBytes } },
      );
    throw invalidInput(
      'invalid_content_encoding',
      `request body is not valid ${e}: ${(err as Error).message}`,
    );
  }
  throw new ServeError(
    'unsupported_media_type',
    'unsupported_content_encoding',
    `Content-Encoding "${e}" is not supported (gzip, deflate, identity)`,
  );
}

/**
 * Triton's raw binary request: the body is the model's one input, batch 1, and every output comes back binary.
 * Only models with a single non-BYTES input qualify (image models); text models take three token tensors.
 */
function rawBinaryRequest(ctx: ServerContext, params: ModelParams, bytes: number): V2RequestJson {
  const { card } = servedEntry(ctx, params.model, parseVersion(params.version));
  if (familyOf(card).rowKind !== 'image' || card.inputs.length !== 1)
    throw invalidInput(
      'raw_binary_unsupported',
      `model ${params.model} has ${card.inputs.length} inputs; a raw binary request (Inference-Header-Content-Length: 0) needs a model with exactly one`,
    );
  return {
    inputs: [
      {
        name: card.inputs[0]!.name,
        datatype: 'FP32',
        shape: [1, ...imageRowShape(card)],
        parameters: { binary_data_size: bytes },
      },
    ],
    parameters: { binary_data_output: true },
  };
}

const tails = new WeakMap<FastifyRequest, Buffer | null>();

export async function v2Plugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    '*',
    { parseAs: 'buffer', bodyLimit: ctx.limits.maxBodyBytes },
    (req, body, done) => {
      decodeContent(body as Buffer, req.headers['content-encoding'], ctx.limits.maxBodyBytes).then(
        (b) => done(null, b),
        (err: Error) => done(err, undefined),
      );
    },
  );

  app.get(
    '/v2',
    {
      schema: {
        summary: 'Server metadata',
        tags: ['v2'],
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              version: { type: 'string' },
              extensions: { type: 'array', items: { type: 'string' } },
            },
          },
        },
      },
    },
    async () => serverMetadata(ctx),
  );

  app.get(
    '/v2/models',
    {
      schema: {
        summary: "Model names (KServe's model list; Triton's is POST /v2/repository/index)",
        tags: ['v2'],
        response: {
          200: { type: 'object', properties: { models: { type: 'array', items: { type: 'string' } } } },
        },
      },
    },
    async () => modelNames(ctx),
  );

  const metaSchema = (withVersion: boolean) => ({
    tags: ['v2'],
    params: {
      type: 'object',
      required: withVersion ? ['model', 'version'] : ['model'],
      properties: { model: modelNameParam, ...(withVersion ? { version: versionParam } : {}) },
    },
  });
  const versioned = (suffix: string) => [
    `/v2/models/:model${suffix}`,
    `/v2/models/:model/versions/:version${suffix}`,
  ];

  for (const path of versioned('')) {
    app.get<{ Params: ModelParams }>(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Model metadata',
          response: { 200: metadataSchema, ...errorResponses(404) },
        },
      },
      async (req) => modelMetadata(ctx, req.params.model, parseVersion(req.params.version)),
    );
  }

  for (const path of versioned('/config')) {
    app.get<{ Params: ModelParams }>(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Triton model configuration (model_config.proto as JSON; what perf_analyzer reads)',
          response: { 200: anyObject, ...errorResponses(404) },
        },
      },
      async (req) => modelConfig(ctx, req.params.model, parseVersion(req.params.version)),
    );
  }

  app.get(
    '/v2/models/stats',
    {
      schema: {
        summary: 'Inference statistics of every served model version (Triton statistics extension)',
        tags: ['v2'],
        response: { 200: anyObject },
      },
    },
    async () => modelStatistics(ctx),
  );
  for (const path of versioned('/stats')) {
    app.get<{ Params: ModelParams }>(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Inference statistics of a model (all served versions, or one)',
          response: { 200: anyObject, ...errorResponses(404) },
        },
      },
      async (req) => modelStatistics(ctx, req.params.model, parseVersion(req.params.version)),
    );
  }

  const readyBody = {
    type: 'object',
    properties: { name: { type: 'string' }, ready: { type: 'boolean' } },
  };
  for (const path of versioned('/ready')) {
    app.get<{ Params: ModelParams }>(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Model readiness (200 ready, 400 not: the V2 health convention)',
          // 400 is both "not ready" and a malformed model name (the error body): the schema lets either through.
          response: {
            200: readyBody,
            400: { type: 'object', additionalProperties: true, properties: readyBody.properties },
            ...errorResponses(404),
          },
        },
      },
      async (req, reply) => {
        const ok = modelReady(ctx, req.params.model, parseVersion(req.params.version));
        return reply.code(ok ? 200 : 400).send({ name: req.params.model, ready: ok });
      },
    );
  }

  const infer = async (
    req: FastifyRequest<{ Params: ModelParams; Body: V2RequestJson }>,
    reply: FastifyReply,
  ) => {
    const track = trackOf(req);
    const body = req.body;
    const t0 = performance.now();
    const decoded = decodeInputs(body, tails.get(req) ?? null, maxElements(ctx));
    const inputs = decoded.map((t, i) => ({ ...t, parameters: body.inputs[i]!.parameters }));
    track.preprocessMs = performance.now() - t0;
    const res = await inferV2(
      ctx,
      req.params.model,
      parseVersion(req.params.version),
      { id: body.id, parameters: body.parameters, inputs, outputs: body.outputs },
      track,
    );
    const t1 = performance.now();
    const { body: out, headerLength } = encodeResponse(
      { model_name: res.model_name, model_version: res.model_version },
      body,
      res.outputs,
    );
    track.postprocessMs += performance.now() - t1;
    if (headerLength !== null)
      reply.header('inference-header-content-length', String(headerLength)).type('application/octet-stream');
    return reply.send(out);
  };
  for (const path of versioned('/infer')) {
    app.post(
      path,
      {
        config: { inference: true },
        bodyLimit: ctx.limits.maxBodyBytes,
        preValidation: async (req) => {
          const raw = req.body;
          if (!Buffer.isBuffer(raw)) throw invalidInput('empty_body', 'missing request body');
          const { json, tail } = splitBinaryBody(raw, req.headers['inference-header-content-length']);
          req.body =
            json === null
              ? rawBinaryRequest(ctx, req.params as ModelParams, raw.length)
              : (json as V2RequestJson);
          tails.set(req, tail);
        },
        schema: {
          ...metaSchema(path.includes(':version')),
          summary:
            'Inference (JSON tensors, or the binary tensor extension with Inference-Header-Content-Length; 0 = raw binary)',
          consumes: ['application/json', 'application/octet-stream'],
          body: inferBody,
          response: { 200: inferResponse, ...errorResponses(400, 404, 413, 415, 429, 500, 503, 504) },
        },
      },
      infer,
    );
  }

  await app.register(v2RepositoryPlugin);
}
