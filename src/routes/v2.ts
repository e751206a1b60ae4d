/**
 * Open Inference Protocol V2 (KServe / Triton REST) for every model in the repository: server metadata,
 * model metadata and readiness (per version too), and inference with tensor inputs (FP32 pixels; INT64/INT32
 * token ids, masks, type ids) or BYTES text inputs that are tokenised server-side (`text`, optional
 * `text_pair`), plus Triton's binary tensor extension. Health endpoints live in health.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Row } from '../batching/collate.js';
import type { ModelCard } from '../model/card.js';
import { invalidInput, ServeError } from '../observability/errors.js';
import { imageRowShape } from '../repository/model.js';
import { trackOf } from './context.js';
import { errorResponses } from './errors.js';
import { imageRows, tensorTokenRows, textRows, TEXT_INPUT, TEXT_PAIR_INPUT } from './v2-rows.js';
import { modelNameParam, versionParam } from './schemas.js';
import {
  decodeInputs,
  encodeResponse,
  splitBinaryBody,
  V2_DATATYPES,
  type V2OutputTensor,
  type V2RequestJson,
} from './v2-codec.js';

const DTYPE_V2: Record<string, string> = {
  float32: 'FP32',
  int64: 'INT64',
  int32: 'INT32',
  uint8: 'UINT8',
  bool: 'BOOL',
};

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
          data: { type: 'array', items: { type: 'number' } },
          parameters: { type: 'object', additionalProperties: true },
        },
      },
    },
  },
} as const;

type ModelParams = { model: string; version?: string };

export function modelMetadata(name: string, versions: number[], card: ModelCard) {
  const dims = (shape: (number | string)[]) => shape.map((d) => (typeof d === 'number' ? d : -1));
  const inputs = card.inputs.map((t) => ({
    name: t.name,
    datatype: DTYPE_V2[t.dtype] ?? t.dtype,
    shape: card.family === 'resnet' ? [-1, ...imageRowShape(card)] : dims(t.shape),
  }));
  if (card.family === 'bert')
    inputs.push(
      { name: TEXT_INPUT, datatype: 'BYTES', shape: [-1] },
      { name: TEXT_PAIR_INPUT, datatype: 'BYTES', shape: [-1] },
    );
  return {
    name,
    versions: versions.map(String),
    platform: 'onnxruntime_onnx',
    inputs,
    outputs: card.outputs.map((t) => ({
      name: t.name,
      datatype: DTYPE_V2[t.dtype] ?? t.dtype,
      shape: dims(t.shape),
    })),
    parameters: {
      family: card.family,
      variant: card.variant,
      source: card.source.kind,
      labels: card.labels.length,
      ...(card.family === 'bert'
        ? {
            text_inputs: `${TEXT_INPUT} (+ ${TEXT_PAIR_INPUT}) as BYTES, or token tensors`,
            task: card.task ?? '',
          }
        : {}),
    },
  };
}

function parseVersion(v: string | undefined): number | undefined {
  return v === undefined ? undefined : Number(v);
}

const tails = new WeakMap<FastifyRequest, Buffer | null>();

export async function v2Plugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  const maxRows = ctx.limits.maxPairsPerRequest;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    '*',
    { parseAs: 'buffer', bodyLimit: ctx.limits.maxBodyBytes },
    (_req, body, done) => done(null, body),
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
    async () => ({
      name: 'padserve',
      version: ctx.version,
      extensions: ['binary_tensor_data'],
    }),
  );

  const metaSchema = (withVersion: boolean) => ({
    tags: ['v2'],
    params: {
      type: 'object',
      required: withVersion ? ['model', 'version'] : ['model'],
      properties: { model: modelNameParam, ...(withVersion ? { version: versionParam } : {}) },
    },
  });

  /** The repository entry and requested version of a model route; 404 for an unknown model or version. */
  const servedEntry = ({ model, version }: ModelParams) => {
    const entry = ctx.models.entry(model);
    if (!entry) throw new ServeError('not_found', 'unknown_model', `unknown model "${model}"`);
    const v = parseVersion(version);
    if (v !== undefined && !entry.served.includes(v))
      throw new ServeError('not_found', 'unknown_version', `model ${model} has no served version ${v}`);
    return { entry, v };
  };

  const metadata = async (req: FastifyRequest<{ Params: ModelParams }>) => {
    const { model } = req.params;
    const { entry, v } = servedEntry(req.params);
    const card = entry.versions.find((x) => x.version === (v ?? entry.served.at(-1)))!.card;
    return modelMetadata(model, entry.served, card);
  };
  for (const path of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Model metadata',
          response: { 200: metadataSchema, ...errorResponses(404) },
        },
      },
      metadata,
    );
  }

  const ready = async (
    req: FastifyRequest<{ Params: ModelParams }>,
    reply: import('fastify').FastifyReply,
  ) => {
    const { model } = req.params;
    const { v } = servedEntry(req.params);
    const m = ctx.models.peek(model, v);
    const ok = !!m && m.state === 'ready' && !ctx.lifecycle.draining;
    return reply.code(ok ? 200 : 503).send({ name: model, ready: ok });
  };
  for (const path of ['/v2/models/:model/ready', '/v2/models/:model/versions/:version/ready']) {
    const readyBody = {
      type: 'object',
      properties: { name: { type: 'string' }, ready: { type: 'boolean' } },
    };
    app.get(
      path,
      {
        schema: {
          ...metaSchema(path.includes(':version')),
          summary: 'Model readiness (200 ready, 503 not)',
          response: { 200: readyBody, 503: readyBody, ...errorResponses(404) },
        },
      },
      ready,
    );
  }

  const infer = async (
    req: FastifyRequest<{ Params: ModelParams; Body: V2RequestJson }>,
    reply: import('fastify').FastifyReply,
  ) => {
    const track = trackOf(req);
    const { model: name, version } = req.params;
    const model = await ctx.models.get(name, parseVersion(version));
    track.model = name;
    const card = model.card;
    const body = req.body;
    const known = card.outputs.map((o) => o.name);
    for (const o of body.outputs ?? [])
      if (!known.includes(o.name))
        throw invalidInput('unknown_output', `unknown output ${o.name} (outputs: ${known.join(', ')})`);

    const t0 = performance.now();
    const maxElements = Math.floor(ctx.limits.maxBodyBytes / 4);
    const inputs = decodeInputs(body, tails.get(req) ?? null, maxElements);
    let rows: Row[];
    if (card.family !== 'bert') rows = imageRows(card, inputs, maxRows);
    else if (inputs.some((t) => t.datatype === 'BYTES')) rows = await textRows(ctx, model, inputs, maxRows);
    else rows = tensorTokenRows(model, inputs, maxRows);
    track.preprocessMs = performance.now() - t0;
    track.checkDeadline();

    // A version swapped out by a reload hands over to its successor, unless the client asked for this version.
    const target = model.current();
    if (version !== undefined && target.version !== model.version) {
      throw new ServeError('not_ready', 'model_not_ready', `model ${name} version ${version} was unloaded`, {
        retryAfterS: 1,
      });
    }
    const results = await target.infer(rows, track.submit);
    track.absorb(results);

    const t1 = performance.now();
    const names = body.outputs?.length ? body.outputs.map((o) => o.name) : known;
    const outputs: V2OutputTensor[] = names.map((n) => {
      const first = results[0]!.value[n]!;
      const width = first.data.length;
      const data = new Float32Array(width * results.length);
      results.forEach((r, i) => data.set(r.value[n]!.data, i * width));
      return { name: n, datatype: 'FP32', shape: [results.length, ...first.shape], data };
    });
    const { body: out, headerLength } = encodeResponse(
      { model_name: name, model_version: String(target.version) },
      body,
      outputs,
    );
    track.postprocessMs = performance.now() - t1;
    if (headerLength !== null)
      reply.header('inference-header-content-length', String(headerLength)).type('application/octet-stream');
    return reply.send(out);
  };
  for (const path of ['/v2/models/:model/infer', '/v2/models/:model/versions/:version/infer']) {
    app.post(
      path,
      {
        config: { inference: true },
        bodyLimit: ctx.limits.maxBodyBytes,
        preValidation: async (req) => {
          const raw = req.body;
          if (!Buffer.isBuffer(raw)) throw invalidInput('empty_body', 'missing request body');
          const { json, tail } = splitBinaryBody(raw, req.headers['inference-header-content-length']);
          req.body = json as V2RequestJson;
          tails.set(req, tail);
        },
        schema: {
          ...metaSchema(path.includes(':version')),
          summary:
            'Inference (JSON tensors, or the binary tensor extension with Inference-Header-Content-Length)',
          consumes: ['application/json', 'application/octet-stream'],
          body: inferBody,
          response: { 200: inferResponse, ...errorResponses(400, 404, 413, 429, 500, 503, 504) },
        },
      },
      infer,
    );
  }
}
