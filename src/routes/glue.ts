/**
 * `POST /glue/:task`: one sentence (pair) under the GLUE field names or their aliases, or `{"pairs": [...]}`
 * (objects with the same fields, `[a, b]` arrays, or strings for single-sentence tasks) up to the configured
 * maximum. The route parses the GLUE fields and shapes the answer; the text task (src/inference/text-task.ts)
 * checks, tokenises, batches (each pair its own row in the token-budget batcher) and decodes.
 */
import type { FastifyInstance } from 'fastify';
import { invalidInput, ServeError } from '../observability/errors.js';
import {
  extractGlueTexts,
  GLUE_PAIR_FIELD_NAMES,
  GLUE_TASK_NAMES,
  GLUE_TASKS,
  parseGlueTaskName,
  type GlueTaskName,
  type GlueTexts,
} from '../preprocess/glue-tasks.js';
import { runTextTask } from '../inference/text-task.js';
import type { ServerContext } from '../inference/server-context.js';
import { trackOf } from './context.js';
import { errorResponses } from './errors.js';
import { timingSchema } from './schemas.js';

const TEXT_FIELDS = [...new Set(['sentence', ...GLUE_PAIR_FIELD_NAMES.flat()])];

const itemSchema = {
  type: 'object',
  properties: {
    label: { type: 'string' },
    probabilities: { type: 'object', additionalProperties: { type: 'number' } },
    score: { type: 'number', description: 'stsb: similarity (0–5 scale)' },
  },
} as const;

const responseSchema = {
  type: 'object',
  required: ['model', 'version', 'source', 'task', 'timing'],
  properties: {
    model: { type: 'string' },
    version: { type: 'string' },
    source: { type: 'string', enum: ['synthetic', 'checkpoint'] },
    task: { type: 'string' },
    ...itemSchema.properties,
    results: {
      type: 'array',
      items: itemSchema,
      description: 'One per pair, in order (when the request used "pairs")',
    },
    timing: timingSchema,
  },
} as const;

type Body = Record<string, unknown> & { pairs?: unknown[] };

function pairItem(task: GlueTaskName, item: unknown, i: number): GlueTexts {
  if (typeof item === 'string')
    return extractGlueTexts(task, {
      [GLUE_TASKS[task].inputs === 'single' ? 'sentence' : 'sentence1']: item,
    });
  if (Array.isArray(item)) {
    const single = GLUE_TASKS[task].inputs === 'single';
    if (item.length !== (single ? 1 : 2) || item.some((x) => typeof x !== 'string')) {
      throw invalidInput(
        'invalid_pair',
        `pairs[${i}]: ${task} takes ${single ? '[sentence]' : '[text_a, text_b]'} (strings)`,
      );
    }
    return { textA: item[0] as string, textB: single ? null : (item[1] as string) };
  }
  try {
    return extractGlueTexts(task, item);
  } catch (err) {
    if (err instanceof Error) err.message = `pairs[${i}]: ${err.message}`;
    throw err;
  }
}

function strictBody(body: unknown): void {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw invalidInput('invalid_request', 'body must be a JSON object');
  for (const [k, v] of Object.entries(body)) {
    if (k === 'pairs') {
      if (!Array.isArray(v)) throw invalidInput('invalid_request', '"pairs" must be an array');
      v.forEach((item: unknown, i) => {
        if (item === null || !['object', 'string'].includes(typeof item))
          throw invalidInput('invalid_pair', `pairs[${i}]: expected an object, an array or a string`);
      });
    } else if (!TEXT_FIELDS.includes(k)) {
      throw invalidInput(
        'invalid_request',
        `unknown field "${k}" (fields: ${TEXT_FIELDS.join(', ')}, pairs)`,
      );
    } else if (typeof v !== 'string') {
      throw invalidInput('invalid_request', `field "${k}" must be a string`);
    }
  }
}

export async function gluePlugin(app: FastifyInstance): Promise<void> {
  const ctx: ServerContext = app.padserve;
  const maxPairs = ctx.limits.maxPairsPerRequest;
  // JSON bodies must be valid UTF-8: fastify's default parser would turn bad bytes into U+FFFD silently and
  // classify a text the client never sent. Decode strictly, then hand over to the default (prototype-poisoning
  // safe) parser. Encapsulated: applies to this plugin's routes only.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: ctx.limits.maxBodyBytes },
    (req, body, done) => {
      let text: string;
      try {
        text = utf8.decode(body as Buffer);
      } catch {
        done(invalidInput('invalid_utf8', 'request body is not valid UTF-8'), undefined);
        return;
      }
      defaultJson(req, text, done);
    },
  );

  app.post<{ Params: { task: string }; Body: Body }>(
    '/glue/:task',
    {
      config: { inference: true },
      bodyLimit: ctx.limits.maxBodyBytes,
      // Strict types before schema validation: fastify's ajv coerces (5 → "5") and drops unknown properties
      // silently, which would classify texts the client never sent.
      preValidation: async (req) => strictBody(req.body),
      schema: {
        summary: 'Run a GLUE task model',
        description: `Tasks: ${GLUE_TASK_NAMES.join(', ')}. Pair fields: ${GLUE_PAIR_FIELD_NAMES.map((p) => p.join('/')).join(', ')}; single-sentence tasks (cola, sst2): sentence. Or "pairs": up to ${maxPairs} items.`,
        tags: ['tasks'],
        params: {
          type: 'object',
          required: ['task'],
          properties: { task: { type: 'string', maxLength: 32 } },
        },
        body: {
          type: 'object',
          properties: {
            ...Object.fromEntries(TEXT_FIELDS.map((f) => [f, { type: 'string' }])),
            pairs: {
              type: 'array',
              minItems: 1,
              maxItems: maxPairs,
              items: {
                type: ['object', 'array', 'string'],
                description:
                  'An object with the task fields, [text_a, text_b], or a string (single-sentence tasks)',
              },
            },
          },
          additionalProperties: false,
        },
        response: { 200: responseSchema, ...errorResponses(400, 404, 413, 429, 500, 503, 504) },
      },
    },
    async (req) => {
      const track = trackOf(req);
      const task = parseGlueTaskName(req.params.task);
      if (!task)
        throw new ServeError(
          'not_found',
          'unknown_task',
          `unknown GLUE task "${req.params.task}" (tasks: ${GLUE_TASK_NAMES.join(', ')})`,
        );
      const name = ctx.models.modelForTask(task);
      if (!name)
        throw new ServeError(
          'not_found',
          'task_not_served',
          `no model in the repository serves ${task} (served: ${ctx.models.tasks().join(', ') || 'none'})`,
        );

      const { pairs, ...fields } = req.body ?? {};
      let texts: GlueTexts[];
      if (pairs !== undefined) {
        if (Object.keys(fields).length)
          throw invalidInput('ambiguous_body', 'give either "pairs" or the sentence fields, not both');
        texts = pairs.map((p, i) => pairItem(task, p, i));
      } else texts = [extractGlueTexts(task, fields)];

      const { target, answer } = await runTextTask(
        ctx,
        {
          model: name,
          pairs: texts.map((t, i) => ({ a: t.textA, b: t.textB, where: pairs ? `pairs[${i}]` : 'text' })),
        },
        track,
      );
      const head = { model: name, version: String(target.version), source: target.card.source.kind, task };
      return pairs !== undefined
        ? { ...head, results: answer, timing: track.timing() }
        : { ...head, ...answer[0], timing: track.timing() };
    },
  );
}
