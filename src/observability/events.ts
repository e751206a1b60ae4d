/**
 * The events the serving core reports and the metrics record: a finished batch (from the batcher) and a model
 * version's life-cycle state (from the repository). Their own module so that observability, below batching and
 * repository, defines what it receives instead of importing it from the layers that send it.
 */

/** One batch that ran (or failed) on a model instance. */
export interface BatchEvent {
  size: number;
  paddedLength: number;
  queueMs: number[];
  inferenceMs: number;
  ok: boolean;
}

/** Life cycle of a served model version: loading → warming → ready → retiring → unloaded (or failed). */
export type ModelState = 'loading' | 'warming' | 'ready' | 'retiring' | 'unloaded' | 'failed';
