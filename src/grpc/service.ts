/**
 * The handlers of `inference.GRPCInferenceService`: each translates a message to and from the transport-neutral
 * V2 functions that the REST routes call too (src/inference/), so both protocols give the same answers. What
 * every call goes through (tokens, drain, deadline, cancellation, metrics, statuses) is in call.ts.
 */
import type * as grpc from '@grpc/grpc-js';
import { invalidInput } from '../observability/errors.js';
import { inferV2, maxElements } from '../inference/v2-infer.js';
import type { ServerContext } from '../inference/server-context.js';
import type { Logger } from '../observability/logging.js';
import { adminOnly, tracked, unary } from './call.js';
import { decodeGrpcInputs, encodeOutputs, parameterMap } from './codec.js';
import type { ModelInferRequest, ModelInferResponse, NameVersion } from './messages.js';
import * as v2 from './v2-adapter.js';

/** A version field: '' = the server's choice, else a positive integer. */
export function versionOf(v: string): number | undefined {
  if (v === '') return undefined;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < 1)
    throw invalidInput('invalid_version', `version "${v}" is not a positive integer`);
  return n;
}

function modelName(name: string): string {
  if (!name) throw invalidInput('invalid_request', 'model name is empty');
  return name;
}

export function inferenceService(ctx: ServerContext, log: Logger): grpc.UntypedServiceImplementation {
  const infer = tracked<ModelInferRequest, ModelInferResponse>(ctx, 'ModelInfer', async (req, track) => {
    const name = modelName(req.model_name);
    const version = versionOf(req.model_version);
    const t0 = performance.now();
    const inputs = decodeGrpcInputs(req, maxElements(ctx)).map((t, i) => {
      const parameters = parameterMap(req.inputs[i]!.parameters);
      return Object.keys(parameters).length ? { ...t, parameters } : t;
    });
    track.preprocessMs += performance.now() - t0;
    const params = parameterMap(req.parameters);
    const res = await inferV2(
      ctx,
      name,
      version,
      {
        ...(req.id ? { id: req.id } : {}),
        ...(Object.keys(params).length ? { parameters: params } : {}),
        inputs,
        outputs: req.outputs.map((o) => {
          const parameters = parameterMap(o.parameters);
          return Object.keys(parameters).length ? { name: o.name, parameters } : { name: o.name };
        }),
      },
      track,
    );
    const t1 = performance.now();
    const encoded = encodeOutputs(res.outputs);
    track.postprocessMs += performance.now() - t1;
    return {
      model_name: res.model_name,
      model_version: res.model_version,
      id: res.id ?? '',
      ...encoded,
    };
  });

  return {
    ServerLive: unary(log, () => ({ live: true })),
    ServerReady: unary(log, () => ({ ready: v2.serverReady(ctx) })),
    ServerMetadata: unary(log, () => v2.serverMetadata(ctx)),
    ModelReady: unary<NameVersion, { ready: boolean }>(log, (req) => ({
      ready: v2.modelReady(ctx, modelName(req.name), versionOf(req.version)),
    })),
    ModelMetadata: unary<NameVersion, unknown>(log, (req) =>
      v2.modelMetadata(ctx, modelName(req.name), versionOf(req.version)),
    ),
    ModelConfig: unary<NameVersion, unknown>(log, (req) => ({
      config: v2.modelConfig(ctx, modelName(req.name), versionOf(req.version)),
    })),
    ModelStatistics: unary<NameVersion, unknown>(log, (req) =>
      v2.modelStatistics(ctx, req.name || undefined, versionOf(req.version)),
    ),
    ModelInfer: unary(log, infer),
    RepositoryIndex: unary<{ ready: boolean }, unknown>(
      log,
      adminOnly(ctx, (req) => ({ models: v2.repositoryIndex(ctx, req.ready) })),
    ),
    RepositoryModelLoad: unary<{ model_name: string }, unknown>(
      log,
      adminOnly(ctx, async (req) => {
        await ctx.models.load(modelName(req.model_name));
        return {};
      }),
    ),
    RepositoryModelUnload: unary<{ model_name: string }, unknown>(
      log,
      adminOnly(ctx, async (req) => {
        await ctx.models.unload(modelName(req.model_name));
        return {};
      }),
    ),
  };
}
