import { describe, expect, it } from 'vitest';
import {
  extractGlueTexts,
  getGlueTask,
  GLUE_TASK_NAMES,
  GLUE_TASKS,
  GlueInputError,
  parseGlueTaskName,
  UnknownGlueTaskError,
  type GlueTaskName,
} from '../../src/preprocess/glue-tasks.js';

function inputError(fn: () => unknown): GlueInputError {
  try {
    fn();
  } catch (e) {
    if (e instanceof GlueInputError) return e;
    throw e;
  }
  throw new Error('expected a GlueInputError');
}

describe('GLUE task table', () => {
  it('has the nine tasks with labels in the standard order', () => {
    expect([...GLUE_TASK_NAMES]).toEqual([
      'cola',
      'sst2',
      'mrpc',
      'qqp',
      'stsb',
      'mnli',
      'qnli',
      'rte',
      'wnli',
    ]);
    const labels = Object.fromEntries(GLUE_TASK_NAMES.map((n) => [n, [...GLUE_TASKS[n].labels]]));
    expect(labels).toEqual({
      cola: ['unacceptable', 'acceptable'],
      sst2: ['negative', 'positive'],
      mrpc: ['not_equivalent', 'equivalent'],
      qqp: ['not_duplicate', 'duplicate'],
      stsb: [],
      mnli: ['entailment', 'neutral', 'contradiction'],
      qnli: ['entailment', 'not_entailment'],
      rte: ['entailment', 'not_entailment'],
      wnli: ['not_entailment', 'entailment'],
    });
  });

  it('single vs pair, GLUE field names, outputs', () => {
    const shape = Object.fromEntries(
      GLUE_TASK_NAMES.map((n) => {
        const t = GLUE_TASKS[n];
        return [n, [t.inputs, [...t.fields], t.numOutputs, t.problemType]];
      }),
    );
    expect(shape).toEqual({
      cola: ['single', ['sentence'], 2, 'single_label_classification'],
      sst2: ['single', ['sentence'], 2, 'single_label_classification'],
      mrpc: ['pair', ['sentence1', 'sentence2'], 2, 'single_label_classification'],
      qqp: ['pair', ['question1', 'question2'], 2, 'single_label_classification'],
      stsb: ['pair', ['sentence1', 'sentence2'], 1, 'regression'],
      mnli: ['pair', ['premise', 'hypothesis'], 3, 'single_label_classification'],
      qnli: ['pair', ['question', 'sentence'], 2, 'single_label_classification'],
      rte: ['pair', ['sentence1', 'sentence2'], 2, 'single_label_classification'],
      wnli: ['pair', ['sentence1', 'sentence2'], 2, 'single_label_classification'],
    });
    const stsb = GLUE_TASKS.stsb;
    expect(stsb.problemType === 'regression' && stsb.scoreRange).toEqual([0, 5]);
    for (const n of GLUE_TASK_NAMES) {
      const t = GLUE_TASKS[n];
      expect(t.name).toBe(n);
      if (t.problemType === 'single_label_classification') expect(t.labels).toHaveLength(t.numOutputs);
    }
  });

  it('parses loose task names', () => {
    expect(parseGlueTaskName('SST-2')).toBe('sst2');
    expect(parseGlueTaskName('sts_b')).toBe('stsb');
    expect(parseGlueTaskName('MNLI')).toBe('mnli');
    expect(parseGlueTaskName('squad')).toBeUndefined();
    expect(getGlueTask('QNLI').name).toBe('qnli');
    expect(() => getGlueTask('imdb')).toThrow(UnknownGlueTaskError);
  });
});

describe('extractGlueTexts', () => {
  it('single-sentence tasks take "sentence" (or "sentence1")', () => {
    expect(extractGlueTexts('sst2', { sentence: 'a gripping film' })).toEqual({
      textA: 'a gripping film',
      textB: null,
    });
    expect(extractGlueTexts(GLUE_TASKS.cola, { sentence1: 'The cat sat.', id: 7 })).toEqual({
      textA: 'The cat sat.',
      textB: null,
    });
    expect(extractGlueTexts('cola', { sentence: '' })).toEqual({ textA: '', textB: null });
  });

  it('pair tasks take sentence1/sentence2, their GLUE names and the aliases', () => {
    const pairs: [string, string][] = [
      ['sentence1', 'sentence2'],
      ['premise', 'hypothesis'],
      ['question', 'sentence'],
      ['question1', 'question2'],
    ];
    const pairTasks: GlueTaskName[] = ['mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli'];
    for (const task of pairTasks) {
      for (const [a, b] of pairs) {
        expect(extractGlueTexts(task, { [a]: 'first', [b]: 'second' })).toEqual({
          textA: 'first',
          textB: 'second',
        });
      }
      const [ga, gb] = GLUE_TASKS[task].fields;
      expect(extractGlueTexts(task, { [ga]: 'x', [gb!]: 'y', label: 1 })).toEqual({ textA: 'x', textB: 'y' });
    }
  });

  it('names the missing field', () => {
    let e = inputError(() => extractGlueTexts('mnli', { premise: 'p' }));
    expect([e.task, e.field, e.problem]).toEqual(['mnli', 'hypothesis', 'missing']);
    expect(e.message).toContain('"hypothesis"');
    e = inputError(() => extractGlueTexts('qnli', { sentence: 's' }));
    expect([e.field, e.problem]).toEqual(['question', 'missing']);
    e = inputError(() => extractGlueTexts('qqp', {}));
    expect([e.field, e.problem]).toEqual(['question1', 'missing']); // the task's own GLUE names by default
    e = inputError(() => extractGlueTexts('sst2', { text: 'hi' }));
    expect([e.field, e.problem]).toEqual(['sentence', 'missing']);
    e = inputError(() => extractGlueTexts('rte', { sentence1: 'a', sentence2: undefined }));
    expect([e.field, e.problem]).toEqual(['sentence2', 'missing']);
  });

  it('names the invalid field', () => {
    let e = inputError(() => extractGlueTexts('mrpc', { sentence1: 'a', sentence2: 5 }));
    expect([e.field, e.problem]).toEqual(['sentence2', 'invalid']);
    expect(e.message).toMatch(/"sentence2" must be a string, got a number/);
    e = inputError(() => extractGlueTexts('cola', { sentence: null }));
    expect([e.field, e.problem]).toEqual(['sentence', 'invalid']);
    e = inputError(() => extractGlueTexts('sst2', { sentence: ['a'] }));
    expect(e.message).toMatch(/got an array/);
  });

  it('refuses mixed namings, duplicate names and a second text for single-sentence tasks', () => {
    let e = inputError(() => extractGlueTexts('mnli', { sentence1: 'a', hypothesis: 'b' }));
    expect(e.problem).toBe('ambiguous');
    expect(e.message).toMatch(/"sentence1", "hypothesis"/);
    e = inputError(() =>
      extractGlueTexts('rte', { sentence1: 'a', sentence2: 'b', premise: 'c', hypothesis: 'd' }),
    );
    expect(e.problem).toBe('ambiguous');
    e = inputError(() => extractGlueTexts('sst2', { sentence: 'a', sentence1: 'b' }));
    expect([e.field, e.problem]).toEqual(['sentence1', 'ambiguous']);
    e = inputError(() => extractGlueTexts('cola', { sentence: 'a', sentence2: 'b' }));
    expect([e.field, e.problem]).toEqual(['sentence2', 'unexpected']);
  });

  it('refuses bodies that are not objects', () => {
    for (const body of [null, 'text', 3, ['a', 'b'], undefined]) {
      const e = inputError(() => extractGlueTexts('qqp', body));
      expect([e.field, e.problem]).toEqual([null, 'not-an-object']);
    }
  });
});
