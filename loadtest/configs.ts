/**
 * The server configurations the comparisons start, and what they share: options, the saturating concurrency,
 * finding a point of a series by its load.
 */
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';
import { bertModel, resnetModel, type BertVariant, type ResnetVariant } from './repo.js';
import type { ServerSpec } from './run-server.js';
import type { Log, Timing } from './sweep.js';
import type { Point, Series } from './types.js';

export interface CompareOptions {
  quick: boolean;
  concurrencies: readonly number[];
  timing: Timing;
  log: Log;
  name?: string;
}

/** Concurrency at which a ResNet / BERT server is saturated: 2× the largest batch keeps a batch queued. */
export const SATURATING = { quick: 16, full: [8, 16, 32] } as const;

export const IMAGE_MODEL = 'resnet50-pad';
export const glueModel = (task: string, variant: BertVariant = 'pad') => `bert-${variant}-${task}`;

/** The main configuration: PAD ResNet-50 and PAD BERT for `tasks`, batching on (or off with maxBatch 1). */
export function mainSpec(tasks: readonly GlueTaskName[], batching = true): ServerSpec {
  return {
    label: batching ? 'batching-on' : 'batching-off',
    models: [
      resnetModel(IMAGE_MODEL, 'pad', batching ? 8 : 1),
      ...tasks.map((t) => bertModel(glueModel(t), t, 'pad', batching ? 32 : 1)),
    ],
  };
}

export function resnetVariantSpec(variant: ResnetVariant): ServerSpec {
  return { label: `resnet50-${variant}`, models: [resnetModel(`resnet50-${variant}`, variant)] };
}

export function bertVariantSpec(variant: BertVariant, task: GlueTaskName = 'mnli'): ServerSpec {
  return { label: `bert-${variant}-${task}`, models: [bertModel(glueModel(task, variant), task, variant)] };
}

export function pointAt(series: Series | undefined, concurrency: number): Point | undefined {
  return series?.points.find((p) => p.mode === 'closed' && p.concurrency === concurrency);
}

export function bestPoint(series: Series): Point {
  return series.points.reduce((a, p) => (p.throughputRps > a.throughputRps ? p : a), series.points[0]!);
}

export const ratio = (a: number | undefined, b: number | undefined): number =>
  a !== undefined && b !== undefined && b > 0 ? Number((a / b).toFixed(3)) : NaN;
