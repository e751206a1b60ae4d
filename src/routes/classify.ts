/**
 * `POST /classify`: an image as a multipart file (field `image`, or the first file) or as a raw `image/*` body;
 * `top_k` and `model` from the query string or multipart fields. The route parses the upload and shapes the
 * answer; the image task (src/inference/image-task.ts) preprocesses, batches and decodes.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { classifyImage } from '../inference/image-task.js';
import { invalidInput, ServeError } from '../observability/errors.js';
import type { ServerContext } from '../inference/server-context.js';
import { trackOf } from './context.js';
import { errorResponses } from './errors.js';
import { timingSchema } from './schemas.js';

export const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif', 'image/tiff'];

const querySchema = {
  type: 'object',
  properties: {
    top_k: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 5,
      description: 'Predictions to return (at most the number of labels)',
    },
    model: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      description: 'Image model (default: the server default image model)',
    },
  },
  additionalProperties: false,
} as const;

const responseSchema = {
  type: 'object',
  required: ['model', 'version', 'source', 'predictions', 'timing'],
  properties: {
    model: { type: 'string' },
    version: { type: 'string' },
    source: {
      type: 'string',
      enum: ['synthetic', 'checkpoint'],
      description: 'Where the weights came from: synthetic predictions are meaningless',
    },
    predictions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['label', 'index', 'score'],
        properties: { label: { type: 'string' }, index: { type: 'integer' }, score: { type: 'number' } },
      },
    },
    timing: timingSchema,
  },
} as const;

const bodyDoc = {
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        properties: {
          image: { type: 'string', format: 'binary', description: 'The image (or the first file part)' },
          top_k: { type: 'integer' },
          model: { type: 'string' },
        },
      },
    },
    ...Object.fromEntries(IMAGE_TYPES.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])),
  },
};

interface Query {
  top_k?: number;
  model?: string;
}

async function readUpload(req: FastifyRequest): Promise<{ bytes: Buffer; fields: Record<string, string> }> {
  const fields: Record<string, string> = {};
  if (!req.isMultipart()) {
    if (Buffer.isBuffer(req.body)) return { bytes: req.body, fields };
    throw new ServeError(
      'unsupported_media_type',
      'unsupported_media_type',
      `send the image as multipart/form-data or as a raw body of type ${IMAGE_TYPES.join(', ')}`,
    );
  }
  let chosen: Buffer | null = null;
  let chosenIsImageField = false;
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        const buf = await part.toBuffer();
        if (!chosen || (part.fieldname === 'image' && !chosenIsImageField)) {
          chosen = buf;
          chosenIsImageField = part.fieldname === 'image';
        }
      } else if (typeof part.value === 'string') {
        fields[part.fieldname] = part.value;
      }
    }
  } catch (err) {
    // The multipart parser's own framing errors ("Unexpected end of multipart data", bad part headers) are
    // plain Errors: the client's malformed body, not a server bug. Typed errors (limits: 413) pass through.
    const e = err as { statusCode?: number; message?: string };
    if (err instanceof ServeError || typeof e?.statusCode === 'number') throw err;
    throw invalidInput('invalid_multipart', `malformed multipart body: ${e?.message ?? 'unreadable'}`);
  }
  if (!chosen)
    throw invalidInput('missing_image', 'multipart body has no file part (send the image in field "image")');
  return { bytes: chosen, fields };
}

function topKFrom(query: Query, fields: Record<string, string>): number {
  if (fields.top_k === undefined) return query.top_k ?? 5;
  const k = Number(fields.top_k);
  if (!Number.isInteger(k) || k < 1 || k > 1000)
    throw invalidInput('invalid_top_k', `top_k must be an integer in [1, 1000], got "${fields.top_k}"`);
  return k;
}

/** The image model a request names, or the server default (falls back to the first image model). */
export function imageModelName(ctx: ServerContext, asked: string | undefined): string {
  if (asked) return asked;
  const images = ctx.models.modelsOf('resnet');
  if (images.includes(ctx.limits.defaultImageModel)) return ctx.limits.defaultImageModel;
  const first = images[0];
  if (!first) throw new ServeError('not_found', 'no_image_model', 'the model repository has no image model');
  return first;
}

/**
 * Multipart limits beyond the body size. The route reads one image (field `image`, else the first file) and two
 * short fields (`top_k`, `model`); the slack lets clients add a stray file or field (curl -F's extra parts) without
 * letting a body fan out into many buffered parts. A field value is a number or a model name (at most 128
 * characters, src/repository/scan.ts), so 1 KiB is ample. Beyond any: 413 `too_many_*` (docs/errors.md).
 */
const MULTIPART_LIMITS = { files: 4, fields: 8, parts: 12, fieldSize: 1024 } as const;

export async function classifyPlugin(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  await app.register(multipart, {
    limits: { fileSize: ctx.limits.maxBodyBytes, ...MULTIPART_LIMITS },
    throwFileSizeLimit: true,
  });
  app.addContentTypeParser(
    IMAGE_TYPES,
    { parseAs: 'buffer', bodyLimit: ctx.limits.maxBodyBytes },
    (_req, body, done) => done(null, body),
  );

  app.post<{ Querystring: Query }>(
    '/classify',
    {
      bodyLimit: ctx.limits.maxBodyBytes,
      config: {
        inference: true,
        swaggerTransform: ({ schema, url }: { schema: object; url: string }) => ({
          schema: { ...schema, body: bodyDoc },
          url,
        }),
      },
      schema: {
        summary: 'Classify an image',
        description:
          'Multipart upload (field `image`, or the first file) or a raw image body. Header `x-deadline-ms` shortens the deadline.',
        tags: ['tasks'],
        consumes: ['multipart/form-data', ...IMAGE_TYPES],
        querystring: querySchema,
        response: { 200: responseSchema, ...errorResponses(400, 404, 413, 415, 429, 500, 503, 504) },
      },
    },
    async (req) => {
      const track = trackOf(req);
      const { bytes, fields } = await readUpload(req);
      const k = topKFrom(req.query, fields);
      const name = imageModelName(ctx, fields.model ?? req.query.model);
      const { target, answer } = await classifyImage(ctx, { model: name, bytes, topK: k }, track);
      return {
        model: name,
        version: String(target.version),
        source: target.card.source.kind,
        predictions: answer,
        timing: track.timing(),
      };
    },
  );
}
