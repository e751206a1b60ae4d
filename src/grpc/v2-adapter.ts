/**
 * The transport-neutral V2 model and server functions (src/inference/v2-models.ts, which the REST routes call
 * too) in the shapes of the gRPC messages: metadata `parameters` become the string map `properties`, readiness
 * is a boolean (gRPC says "not ready" with ready = false, not with a status), the Triton JSON of the model
 * configuration, statistics and repository index passes as it is (its field names are the .proto's).
 */
import * as models from '../inference/v2-models.js';
import type { InferenceContext } from '../inference/v2-context.js';
import type { ModelMetadataResponse } from './messages.js';

export const serverMetadata = models.serverMetadata;
export const modelReady = models.modelReady;
export const modelConfig = models.modelConfig;
export const modelStatistics = models.modelStatistics;
export const repositoryIndex = models.repositoryIndex;

export function serverReady(ctx: InferenceContext): boolean {
  return models.serverReady(ctx).ready;
}

export function modelMetadata(
  ctx: InferenceContext,
  name: string,
  version: number | undefined,
): ModelMetadataResponse {
  const m = models.modelMetadata(ctx, name, version);
  return {
    name: m.name,
    versions: m.versions,
    platform: m.platform,
    inputs: m.inputs,
    outputs: m.outputs,
    properties: Object.fromEntries(Object.entries(m.parameters).map(([k, v]) => [k, String(v)])),
  };
}
