/**
 * The text task (`POST /glue/:task`): sentence (pairs) → checked → tokenised (inline or in the preprocessing
 * pool) → one token row each → label + probabilities, or a score for a regression head. The route parses the
 * GLUE fields and shapes the answer; the pipeline is task.ts.
 */
import { labelAnswer, type LabelAnswer } from '../model/decode.js';
import { checkText, tokenRow } from './text.js';
import { runTask, type TaskResult } from './task.js';
import type { InferenceContext, InferTrack } from './v2-context.js';

export interface TextPair {
  a: string;
  b: string | null;
  /** Names the pair in error messages (`text`, `pairs[3]`). */
  where: string;
}

export function runTextTask(
  ctx: InferenceContext,
  req: { model: string; pairs: TextPair[] },
  track: InferTrack,
): Promise<TaskResult<LabelAnswer[]>> {
  for (const p of req.pairs) {
    checkText(p.a, ctx.limits.maxTextChars, p.where);
    if (p.b !== null) checkText(p.b, ctx.limits.maxTextChars, p.where);
  }
  return runTask(ctx, track, {
    name: req.model,
    async rows(model) {
      const { encodings } = await ctx.preprocess.text(
        req.pairs.map((p) => ({ a: p.a, b: p.b })),
        model.maxLength,
      );
      return encodings.map((e) => tokenRow(e.ids, e.types));
    },
    decode(target, results) {
      const card = target.card;
      const out = card.outputs[0]!.name;
      return results.map((r) => labelAnswer(card, r.value[out]!.data));
    },
  });
}
