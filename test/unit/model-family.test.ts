import { describe, expect, it } from 'vitest';
import { CountPolicy, TokenBudgetPolicy } from '../../src/batching/policy.js';
import { RequestQueue } from '../../src/batching/queue.js';
import type { BertCard, ModelCard, ResNetCard } from '../../src/model/card.js';
import { labelAnswer } from '../../src/model/decode.js';
import { ServeError } from '../../src/observability/errors.js';
import { familyOf } from '../../src/repository/family.js';
import type { ServingConfig } from '../../src/repository/serving.js';

// The fields the family functions read; the rest of a card does not matter to them.
const imageCard = {
  family: 'resnet',
  inputs: [{ name: 'pixel_values', dtype: 'float32', shape: ['batch', 3, 'height', 'width'] }],
  outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', 3] }],
  labels: ['a', 'b', 'c'],
  preprocess: { size: 32 },
  graph: { buckets: [{ batch: 1 }, { batch: 4 }] },
} as unknown as ResNetCard;

const textCard = (problemType: BertCard['problemType']) =>
  ({
    family: 'bert',
    inputs: ['input_ids', 'attention_mask', 'token_type_ids'].map((name) => ({
      name,
      dtype: 'int64',
      shape: ['batch', 'sequence'],
    })),
    outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', 2] }],
    labels: ['negative', 'positive'],
    problemType,
    task: 'SST2',
    tokenizer: { maxLength: 128 },
    architecture: { maxPositions: 64 },
    graph: {},
  }) as unknown as BertCard;

const serving = { max_batch_size: 8, max_batch_tokens: 256, length_buckets: [16, 32, 128] } as ServingConfig;

describe('model families', () => {
  it('image: pixel rows of the card geometry, count batching over the graph buckets, NCHW metadata', () => {
    const f = familyOf(imageCard);
    expect(f.rowKind).toBe('image');
    expect(f.rowShape(imageCard)).toEqual([3, 32, 32]);
    expect(f.maxLength(imageCard)).toBe(0);
    expect(f.policy(imageCard, serving)).toBeInstanceOf(CountPolicy);
    const rows = f.warmupRows(imageCard, 2, 1);
    expect(rows.map((r) => r.kind === 'image' && r.data.length)).toEqual([3 * 32 * 32, 3 * 32 * 32]);
    const feeds = f.collate(imageCard, rows, 1, f.rowShape(imageCard));
    expect(feeds.pixel_values!.shape).toEqual([2, 3, 32, 32]);
    expect(f.inputDims(imageCard, imageCard.inputs[0]!)).toEqual([3, 32, 32]);
    expect([f.layout, f.optionalInput('pixel_values'), f.task(imageCard), f.regression(imageCard)]).toEqual([
      'NCHW',
      false,
      null,
      false,
    ]);
  });

  it('text: token rows up to the tokenizer limit within the position table, token-budget batching', () => {
    const card = textCard('single_label_classification');
    const f = familyOf(card);
    expect(f.rowKind).toBe('tokens');
    expect(f.maxLength(card)).toBe(64);
    const policy = f.policy(card, serving);
    expect(policy).toBeInstanceOf(TokenBudgetPolicy);
    expect((policy as TokenBudgetPolicy).buckets).toEqual([16, 32, 64]);
    const [row] = f.warmupRows(card, 1, 5);
    expect(row!.kind === 'tokens' && [...row!.ids]).toEqual([101n, 1996n, 1996n, 1996n, 102n]);
    const feeds = f.collate(card, f.warmupRows(card, 3, 5), 8, []);
    expect(feeds.input_ids!.shape).toEqual([3, 8]);
    expect(card.inputs.map((t) => f.optionalInput(t.name))).toEqual([false, true, true]);
    expect(f.inputDims(card, card.inputs[0]!)).toEqual([-1]);
    expect([f.layout, f.task(card)]).toEqual([null, 'SST2']);
  });

  it('the head decides the answer: classes with probabilities, or a regression score', () => {
    const logits = Float32Array.from([0, 2]);
    const classes = labelAnswer(textCard('single_label_classification'), logits);
    expect(classes).toMatchObject({ label: 'positive' });
    expect('probabilities' in classes && classes.probabilities.positive).toBeCloseTo(0.8808, 4);
    expect(labelAnswer(textCard('regression'), Float32Array.from([3.25]))).toEqual({ score: 3.25 });
    expect(familyOf(textCard('regression') as ModelCard).regression(textCard('regression'))).toBe(true);
  });
});

describe('admission', () => {
  it("checkRoom refuses with the queue's own queue_full, and queues nothing", () => {
    // A clock that never fires: the entries' deadline timers stay inert.
    const clock = { now: () => 0, setTimeout: () => 0, clearTimeout: () => undefined };
    const q = new RequestQueue<number, number>({ maxSize: 2, name: 'm/1', retryAfterS: 3, clock });
    q.push([{ payload: 1, length: 1 }], { deadline: 60_000 });
    expect(() => q.checkRoom(1)).not.toThrow();
    const refused = (fn: () => unknown): ServeError => {
      try {
        fn();
      } catch (e) {
        return e as ServeError;
      }
      throw new Error('not refused');
    };
    const early = refused(() => q.checkRoom(2));
    const late = refused(() =>
      q.push(
        [1, 2].map((payload) => ({ payload, length: 1 })),
        { deadline: 60_000 },
      ),
    );
    expect(early).toBeInstanceOf(ServeError);
    expect({ ...early, message: early.message }).toEqual({ ...late, message: late.message });
    expect(early).toMatchObject({ code: 'queue_full', status: 429, retryAfterS: 3 });
    expect(q.size).toBe(1);
    q.clear(new Error('done'));
  });
});
