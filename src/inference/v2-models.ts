/**
 * V2 model and server information, transport-neutral (HTTP in src/routes/v2*.ts and health.ts; gRPC imports
 * it too). Every function takes the `InferenceContext` (v2-context.ts) and returns plain JSON-able objects, or
 * throws `ServeError` (`not_found` for an unknown model or version).
 *
 * - `serverMetadata(ctx)` → `{ name, version, extensions }`
 * - `serverReady(ctx)` → `{ ready, draining, models: { [name]: { loaded, loading, error } } }`
 * - `modelReady(ctx, name, version?)` → boolean (loaded, warmed, not draining)
 * - `modelMetadata(ctx, name, version?)` → KServe `$metadata_model_response`
 * - `modelConfig(ctx, name, version?)` → Triton `ModelConfig` JSON (what perf_analyzer reads)
 * - `modelStatistics(ctx, name?, version?)` → Triton `$stats_model_response` `{ model_stats: [...] }`
 * - `repositoryIndex(ctx, readyOnly)` → Triton `$repository_index_response` `[{ name, version?, state, reason }]`
 * - `modelNames(ctx)` → `{ models: [name, ...] }` (KServe's model list)
 *
 * Readiness: with `--load-policy all` the server is ready when every model not unloaded on purpose is loaded and
 * warmed. With `lazy` models load on their first request, so the server is ready when no model's last load
 * failed (Triton's explicit mode likewise counts only the models it was asked to serve); `modelReady` stays
 * strict (loaded now). Both are false while draining.
 */
import type { ModelCard } from '../model/card.js';
import { ServeError, unknownModel } from '../observability/errors.js';
import type { ModelEntry } from '../repository/scan.js';
import { familyOf, metadataDims } from '../repository/family.js';
import { placementLine } from '../runtime/placement.js';
import type { InferenceContext } from './v2-context.js';
import { DEFAULT_PRIORITY_LEVEL, PRIORITY_LEVELS } from './v2-infer.js';
import { TEXT_INPUT, TEXT_PAIR_INPUT } from './v2-rows.js';

/** What server metadata announces (Triton extension names). */
export const EXTENSIONS = [
  'binary_tensor_data',
  'classification',
  'model_configuration',
  'model_repository',
  'schedule_policy',
  'statistics',
] as const;

/** Platform name in metadata and config: Triton's name for its ONNX Runtime backend (see docs/compatibility.md). */
export const PLATFORM = 'onnxruntime_onnx';

const DTYPE_V2: Record<string, string> = {
  float32: 'FP32',
  int64: 'INT64',
  int32: 'INT32',
  uint8: 'UINT8',
  bool: 'BOOL',
};

export function serverMetadata(ctx: InferenceContext): {
  name: string;
  version: string;
  extensions: string[];
} {
  return { name: 'padserve', version: ctx.version, extensions: [...EXTENSIONS] };
}

/** The repository entry and requested version of a model; 404 for an unknown model or a version not served. */
export function servedEntry(
  ctx: InferenceContext,
  name: string,
  version?: number,
): { entry: ModelEntry; version: number | undefined; card: ModelCard } {
  const entry = ctx.models.entry(name);
  if (!entry) throw unknownModel(name);
  if (version !== undefined && !entry.served.includes(version))
    throw new ServeError('not_found', 'unknown_version', `model ${name} has no served version ${version}`);
  const v = version ?? entry.served.at(-1);
  const card = (entry.versions.find((x) => x.version === v) ?? entry.versions.at(-1)!).card;
  return { entry, version, card };
}

export function serverReady(ctx: InferenceContext): {
  ready: boolean;
  draining: boolean;
  models: Record<string, { loaded: number[]; loading: boolean; error: string | null }>;
} {
  const models: Record<string, { loaded: number[]; loading: boolean; error: string | null }> = {};
  let failed = false;
  for (const name of ctx.models.names()) {
    const s = ctx.models.status(name)!;
    models[name] = { loaded: s.loaded, loading: s.loading, error: s.error };
    if (s.error !== null && !s.held && s.loaded.length === 0) failed = true;
  }
  const lazyOk = ctx.models.policy !== 'lazy' || !failed;
  const draining = ctx.lifecycle.draining;
  return { ready: ctx.models.ready() && lazyOk && !draining, draining, models };
}

export function modelReady(ctx: InferenceContext, name: string, version?: number): boolean {
  servedEntry(ctx, name, version);
  const m = ctx.models.peek(name, version);
  return !!m && m.state === 'ready' && !ctx.lifecycle.draining;
}

/** The inputs a client must send (image: pixels; text: the token tensors — text/text_pair are the alternative). */
function metadataInputs(card: ModelCard): { name: string; datatype: string; shape: number[] }[] {
  const family = familyOf(card);
  return card.inputs.map((t) => ({
    name: t.name,
    datatype: DTYPE_V2[t.dtype] ?? t.dtype,
    // The batch axis is always variable: the server batches requests.
    shape: [-1, ...family.inputDims(card, t)],
  }));
}

export function modelMetadata(ctx: InferenceContext, name: string, version?: number) {
  const { entry, card } = servedEntry(ctx, name, version);
  // Nodes per execution provider from the load's profiled probe run (CUDA loads; src/runtime/placement.ts).
  const placement = ctx.models.peek(name, version)?.instances[0]?.placement;
  return {
    name,
    versions: entry.served.map(String),
    platform: PLATFORM,
    inputs: metadataInputs(card),
    outputs: card.outputs.map((t) => ({
      name: t.name,
      datatype: DTYPE_V2[t.dtype] ?? t.dtype,
      shape: metadataDims(t.shape),
    })),
    parameters: {
      family: card.family,
      variant: card.variant,
      source: card.source.kind,
      labels: card.labels.length,
      ...(familyOf(card).rowKind === 'tokens'
        ? {
            text_inputs: `${TEXT_INPUT} (+ ${TEXT_PAIR_INPUT}) as BYTES instead of the token tensors (not both); attention_mask and token_type_ids are optional`,
            task: familyOf(card).task(card) ?? '',
          }
        : {
            image_datatypes:
              'FP32 or FP16 normalised NCHW; UINT8 0-255 NCHW or NHWC (normalised by the server)',
          }),
      ...(placement ? { placement: placementLine(placement) } : {}),
    },
  };
}

const TRITON_TYPE: Record<string, string> = {
  FP32: 'TYPE_FP32',
  FP16: 'TYPE_FP16',
  INT64: 'TYPE_INT64',
  INT32: 'TYPE_INT32',
  UINT8: 'TYPE_UINT8',
  BOOL: 'TYPE_BOOL',
  BYTES: 'TYPE_STRING',
};

/** Triton's `ModelConfig` (model_config.proto) as JSON, batch dimension left out of `dims` (max_batch_size > 0). */
export function modelConfig(ctx: InferenceContext, name: string, version?: number): Record<string, unknown> {
  const { entry, card } = servedEntry(ctx, name, version);
  const serving = entry.serving;
  const loaded = ctx.models.peek(name, version);
  const family = familyOf(card);
  const input = card.inputs.map((t) => ({
    name: t.name,
    data_type: TRITON_TYPE[DTYPE_V2[t.dtype] ?? ''] ?? 'TYPE_INVALID',
    format: family.layout === 'NCHW' ? 'FORMAT_NCHW' : 'FORMAT_NONE',
    dims: family.inputDims(card, t),
    optional: family.optionalInput(t.name),
  }));
  if (family.rowKind === 'tokens')
    for (const n of [TEXT_INPUT, TEXT_PAIR_INPUT])
      input.push({ name: n, data_type: 'TYPE_STRING', format: 'FORMAT_NONE', dims: [1], optional: true });
  return {
    name,
    platform: PLATFORM,
    backend: 'onnxruntime',
    version_policy: { specific: { versions: entry.served } },
    max_batch_size: serving.max_batch_size,
    input,
    output: card.outputs.map((t) => ({
      name: t.name,
      data_type: TRITON_TYPE[DTYPE_V2[t.dtype] ?? ''] ?? 'TYPE_INVALID',
      dims: metadataDims(t.shape.slice(1)),
      label_filename: '',
      is_shape_tensor: false,
    })),
    dynamic_batching: {
      preferred_batch_size: [],
      max_queue_delay_microseconds: Math.round(serving.max_queue_delay_ms * 1000),
      preserve_ordering: false,
      priority_levels: PRIORITY_LEVELS,
      default_priority_level: DEFAULT_PRIORITY_LEVEL,
      default_queue_policy: {
        timeout_action: 'REJECT',
        default_timeout_microseconds: 0,
        allow_timeout_override: true,
        max_queue_size: serving.max_queue_size,
      },
    },
    instance_group: [
      {
        name: `${name}_0`,
        kind: (loaded?.device ?? 'cpu') === 'cuda' ? 'KIND_GPU' : 'KIND_CPU',
        count: serving.instances,
        gpus: [],
      },
    ],
    default_model_filename: card.graph.file,
    parameters: {
      padserve_family: { string_value: card.family },
      padserve_source: { string_value: card.source.kind },
      ...(family.rowKind === 'tokens'
        ? { padserve_max_batch_tokens: { string_value: String(serving.max_batch_tokens) } }
        : {}),
    },
  };
}

export function modelStatistics(
  ctx: InferenceContext,
  name?: string,
  version?: number,
): { model_stats: Record<string, unknown>[] } {
  const names =
    name === undefined ? [...ctx.models.names()].sort() : [servedEntry(ctx, name, version).entry.name];
  const out: Record<string, unknown>[] = [];
  for (const n of names) {
    const versions = version !== undefined ? [version] : ctx.models.entry(n)!.served;
    for (const v of versions) out.push(ctx.metrics.statistics.modelStat(n, v));
  }
  return { model_stats: out };
}

export function repositoryIndex(
  ctx: InferenceContext,
  readyOnly: boolean,
): { name: string; version?: string; state: string; reason: string }[] {
  const out: { name: string; version?: string; state: string; reason: string }[] = [];
  for (const name of [...ctx.models.names()].sort()) {
    const s = ctx.models.status(name)!;
    for (const v of s.loaded) out.push({ name, version: String(v), state: 'READY', reason: '' });
    if (s.loaded.length || readyOnly) continue;
    if (s.loading) out.push({ name, state: 'LOADING', reason: '' });
    else
      out.push({
        name,
        state: 'UNAVAILABLE',
        reason:
          s.error ??
          (s.held
            ? 'unloaded'
            : ctx.models.policy === 'lazy'
              ? 'not loaded (loads on first request)'
              : 'not loaded'),
      });
  }
  return out;
}

export function modelNames(ctx: InferenceContext): { models: string[] } {
  return { models: [...ctx.models.names()].sort() };
}
