/** Turning logits into answers: softmax, top-k with labels, regression scores. Pure; shared by CLI and server. */
import type { ModelCard } from './card.js';
import type { FloatTensor } from '../tensor.js';

export interface Prediction {
  label: string;
  index: number;
  score: number;
}

/** Numerically stable softmax of one row (float64 accumulation). */
export function softmax(row: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  const exps = Array.from({ length: row.length }, (_, i) => Math.exp(row[i]! - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function topK(probs: readonly number[], k: number, labels: readonly string[]): Prediction[] {
  const order = probs.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return order
    .slice(0, Math.max(0, Math.min(k, probs.length)))
    .map(([score, index]) => ({ label: labels[index] ?? String(index), index, score }));
}

export function rows(t: FloatTensor): Float32Array[] {
  const [n = 0] = t.shape;
  const width = n === 0 ? 0 : t.data.length / n;
  return Array.from({ length: n }, (_, i) => t.data.subarray(i * width, (i + 1) * width));
}

export type RowAnswer = { predictions: Prediction[]; logits: number[] } | { score: number };

/** Whether a model's head is a regression (one score per row) rather than a classifier over `card.labels`. */
export function isRegression(card: ModelCard): boolean {
  return card.family === 'bert' && card.problemType === 'regression';
}

/** One answer per batch row: a regression head gives its score, a classifier its top-k labels. */
export function decodeRows(card: ModelCard, logits: FloatTensor, k: number): RowAnswer[] {
  const regression = isRegression(card);
  return rows(logits).map((row) =>
    regression
      ? { score: row[0]! }
      : { predictions: topK(softmax(row), k, card.labels), logits: Array.from(row) },
  );
}

export type LabelAnswer = { label: string; probabilities: Record<string, number> } | { score: number };

/** One row's answer as the task routes give it: label + probabilities for a classifier, score for a regression. */
export function labelAnswer(card: ModelCard, logits: Float32Array): LabelAnswer {
  if (isRegression(card)) return { score: logits[0]! };
  const probs = softmax(logits);
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[best]!) best = i;
  const probabilities: Record<string, number> = {};
  probs.forEach((p, i) => (probabilities[card.labels[i] ?? String(i)] = p));
  return { label: card.labels[best] ?? String(best), probabilities };
}
