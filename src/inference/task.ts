/**
 * One inference pipeline for every route and transport: resolve the model → check it takes this request →
 * admission (refuse at once when its queue has no room, before any preprocessing) → build the rows (timed as
 * preprocessing) → deadline check → infer on the current version → decode (timed as postprocessing). A task
 * (image-task.ts, text-task.ts, V2's v2-infer.ts) says only what differs: which rows, which answer.
 *
 * Transport-neutral: nothing here imports fastify or gRPC.
 */
import type { EntryResult, SubmitOptions } from '../batching/queue.js';
import type { Row, RowOutputs } from '../batching/collate.js';
import { ServeError } from '../observability/errors.js';
import type { ServedModel } from '../repository/model.js';
import type { InferenceContext, InferTrack } from './v2-context.js';

/** Throws 504 `deadline_exceeded` once `deadline` (performance.now() clock) has passed. */
export function checkDeadline(deadline: number, now = performance.now()): void {
  if (now >= deadline)
    throw new ServeError(
      'deadline_exceeded',
      'deadline_exceeded',
      'deadline exceeded before the request was queued',
    );
}

export interface TaskSpec<A> {
  /** The model, and a version when the client pinned one (absent: the newest; a reload hands over). */
  name: string;
  version?: number;
  /** Scheduling when the request overrides the track's (V2 `priority` / `timeout` parameters). */
  schedule?: { deadline: number; priority: number };
  /** Refuses a model that cannot take this request (wrong kind, unknown outputs), before any work. */
  accept?(model: ServedModel): void;
  /** Rows the request will queue, when known before preprocessing: admission is checked first. */
  admitRows?: number;
  /** The request as batcher rows (preprocessing). */
  rows(model: ServedModel): Row[] | Promise<Row[]>;
  /** The answer from the rows' results (postprocessing), on the version that ran them. */
  decode(target: ServedModel, results: EntryResult<RowOutputs>[]): A;
}

export interface TaskResult<A> {
  /** The version resolved for the request, and the one that ran it (its successor after a reload). */
  model: ServedModel;
  target: ServedModel;
  results: EntryResult<RowOutputs>[];
  answer: A;
}

/**
 * Runs one request through the pipeline (see the top of this file). Phase times go to `track`; on failure
 * after the model was resolved, `onFailure(model)` is called (V2 statistics) before the error propagates.
 */
export async function runTask<A>(
  ctx: Pick<InferenceContext, 'models' | 'limits'>,
  track: InferTrack,
  spec: TaskSpec<A>,
  onFailure?: (model: ServedModel) => void,
): Promise<TaskResult<A>> {
  const model = await ctx.models.get(spec.name, spec.version);
  track.model = spec.name;
  try {
    spec.accept?.(model);
    if (spec.admitRows !== undefined) model.current().admit(spec.admitRows);

    const t0 = performance.now();
    const rows = await spec.rows(model);
    track.preprocessMs += performance.now() - t0;
    const deadline = spec.schedule?.deadline ?? track.deadline;
    checkDeadline(deadline);

    // A version swapped out by a reload hands over to its successor, unless the client asked for this version.
    const target = model.current();
    if (spec.version !== undefined && target.version !== model.version)
      throw new ServeError(
        'not_ready',
        'model_not_ready',
        `model ${spec.name} version ${spec.version} was unloaded`,
        { retryAfterS: ctx.limits.retryAfterS },
      );
    const submit: SubmitOptions = {
      deadline,
      signal: track.signal,
      priority: spec.schedule?.priority ?? track.priority,
    };
    const results = await target.infer(rows, submit);
    track.absorb(results);

    const t1 = performance.now();
    const answer = spec.decode(target, results);
    track.postprocessMs = performance.now() - t1;
    return { model, target, results, answer };
  } catch (err) {
    onFailure?.(model);
    throw err;
  }
}
