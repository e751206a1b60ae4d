/**
 * The image task (`POST /classify`): one encoded image → preprocessing per the model card (in the preprocessing
 * pool) → one row → top-k labels. The route parses the upload and shapes the answer; the pipeline is task.ts.
 */
import { softmax, topK, type Prediction } from '../model/decode.js';
import { invalidInput, ServeError } from '../observability/errors.js';
import { isQueueFull } from '../preprocess/preprocess-pool.js';
import { familyOf, imageCard } from '../repository/family.js';
import { runTask, type TaskResult } from './task.js';
import type { InferenceContext, InferTrack } from './v2-context.js';

export interface ImageRequest {
  model: string;
  /** The encoded image (JPEG, PNG, WebP, GIF, AVIF, TIFF). */
  bytes: Buffer;
  topK: number;
}

export function classifyImage(
  ctx: InferenceContext,
  req: ImageRequest,
  track: InferTrack,
): Promise<TaskResult<Prediction[]>> {
  return runTask(ctx, track, {
    name: req.model,
    accept(model) {
      if (familyOf(model.card).rowKind !== 'image')
        throw invalidInput(
          'not_an_image_model',
          `model ${req.model} is a ${model.card.family} model; /classify needs an image model`,
        );
    },
    // A model whose queue is already full refuses at once, before the image costs a decode.
    admitRows: 1,
    async rows(model) {
      const card = imageCard(model.card);
      try {
        // The request's signal: a client that goes away takes its image out of the preprocessing queue.
        const { data } = await ctx.preprocess.image(req.bytes, card.preprocess, track.signal);
        return [{ kind: 'image', data }];
      } catch (err) {
        if (isQueueFull(err))
          throw new ServeError(
            'rejected_queue_full',
            'queue_full',
            'the image preprocessing queue is full; retry later',
            { retryAfterS: ctx.limits.retryAfterS },
          );
        if (track.signal.aborted)
          throw new ServeError('client_cancelled', 'client_cancelled', 'the client went away', {
            cause: err,
          });
        throw err;
      }
    },
    decode(target, results) {
      const card = target.card;
      const logits = results[0]!.value[card.outputs[0]!.name]!.data;
      return topK(softmax(logits), req.topK, card.labels);
    },
  });
}
