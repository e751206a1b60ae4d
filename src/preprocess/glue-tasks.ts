/**
 * The nine GLUE tasks: what each one takes (one sentence or a pair, under which field names), what it predicts
 * (labels in the standard order of the GLUE datasets / Hugging Face `glue` configs, or a 0–5 similarity score for
 * STS-B), and a pure function that pulls (text_a, text_b) out of a request object.
 *
 * Accepted field names: pair tasks take any one of the naming pairs sentence1/sentence2, premise/hypothesis,
 * question/sentence, question1/question2 (each task's own GLUE names are among them); single-sentence tasks take
 * `sentence` (or `sentence1`). Exactly one naming must be used; mixing namings, a missing or non-string text, or a
 * second text for a single-sentence task is a {@link GlueInputError} naming the field. Empty strings are valid
 * (they encode to `[CLS] [SEP]`).
 */

export const GLUE_TASK_NAMES = [
  'cola',
  'sst2',
  'mrpc',
  'qqp',
  'stsb',
  'mnli',
  'qnli',
  'rte',
  'wnli',
] as const;
export type GlueTaskName = (typeof GLUE_TASK_NAMES)[number];

interface GlueTaskBase {
  name: GlueTaskName;
  /** Official short description. */
  title: string;
  /** Outputs of the classifier head (the number of labels, 1 for STS-B). */
  numOutputs: number;
}

export interface GlueSingleTask {
  inputs: 'single';
  /** The GLUE dataset's field name. */
  fields: readonly [string];
}

export interface GluePairTask {
  inputs: 'pair';
  /** The GLUE dataset's field names for text_a and text_b. */
  fields: readonly [string, string];
}

export interface GlueClassification {
  problemType: 'single_label_classification';
  /** Label names, index = class id. */
  labels: readonly string[];
}

export interface GlueRegression {
  problemType: 'regression';
  labels: readonly [];
  /** The gold scores' range (the model's output is not clipped). */
  scoreRange: readonly [number, number];
}

export type GlueTask = GlueTaskBase & (GlueSingleTask | GluePairTask) & (GlueClassification | GlueRegression);

const cls = (labels: readonly string[]): GlueClassification => ({
  problemType: 'single_label_classification',
  labels,
});

export const GLUE_TASKS: Readonly<Record<GlueTaskName, GlueTask>> = {
  cola: {
    name: 'cola',
    title: 'CoLA: grammatical acceptability',
    numOutputs: 2,
    inputs: 'single',
    fields: ['sentence'],
    ...cls(['unacceptable', 'acceptable']),
  },
  sst2: {
    name: 'sst2',
    title: 'SST-2: sentiment',
    numOutputs: 2,
    inputs: 'single',
    fields: ['sentence'],
    ...cls(['negative', 'positive']),
  },
  mrpc: {
    name: 'mrpc',
    title: 'MRPC: paraphrase',
    numOutputs: 2,
    inputs: 'pair',
    fields: ['sentence1', 'sentence2'],
    ...cls(['not_equivalent', 'equivalent']),
  },
  qqp: {
    name: 'qqp',
    title: 'QQP: duplicate questions',
    numOutputs: 2,
    inputs: 'pair',
    fields: ['question1', 'question2'],
    ...cls(['not_duplicate', 'duplicate']),
  },
  stsb: {
    name: 'stsb',
    title: 'STS-B: semantic similarity (0–5)',
    numOutputs: 1,
    inputs: 'pair',
    fields: ['sentence1', 'sentence2'],
    problemType: 'regression',
    labels: [],
    scoreRange: [0, 5],
  },
  mnli: {
    name: 'mnli',
    title: 'MNLI: natural language inference',
    numOutputs: 3,
    inputs: 'pair',
    fields: ['premise', 'hypothesis'],
    ...cls(['entailment', 'neutral', 'contradiction']),
  },
  qnli: {
    name: 'qnli',
    title: 'QNLI: question answering NLI',
    numOutputs: 2,
    inputs: 'pair',
    fields: ['question', 'sentence'],
    ...cls(['entailment', 'not_entailment']),
  },
  rte: {
    name: 'rte',
    title: 'RTE: textual entailment',
    numOutputs: 2,
    inputs: 'pair',
    fields: ['sentence1', 'sentence2'],
    ...cls(['entailment', 'not_entailment']),
  },
  wnli: {
    name: 'wnli',
    title: 'WNLI: Winograd NLI',
    numOutputs: 2,
    inputs: 'pair',
    fields: ['sentence1', 'sentence2'],
    ...cls(['not_entailment', 'entailment']),
  },
};

export class UnknownGlueTaskError extends Error {
  override name = 'UnknownGlueTaskError';
  constructor(readonly given: string) {
    super(`unknown GLUE task ${JSON.stringify(given)} (expected one of ${GLUE_TASK_NAMES.join(', ')})`);
  }
}

/** `sst2`, `SST-2`, `sst_2`, `STS-B` … → the canonical name; undefined if it is not a GLUE task. */
export function parseGlueTaskName(name: string): GlueTaskName | undefined {
  const key = name.toLowerCase().replace(/[-_\s]/g, '');
  return (GLUE_TASK_NAMES as readonly string[]).includes(key) ? (key as GlueTaskName) : undefined;
}

/** The task for a (loosely spelled) name; throws {@link UnknownGlueTaskError}. */
export function getGlueTask(name: string): GlueTask {
  const key = parseGlueTaskName(name);
  if (key === undefined) throw new UnknownGlueTaskError(name);
  return GLUE_TASKS[key];
}

export type GlueInputProblem = 'not-an-object' | 'missing' | 'invalid' | 'ambiguous' | 'unexpected';

/** A request that does not carry the texts a task needs. `field` names the offending field (null: the body). */
export class GlueInputError extends Error {
  override name = 'GlueInputError';
  constructor(
    readonly task: GlueTaskName,
    readonly field: string | null,
    readonly problem: GlueInputProblem,
    message: string,
  ) {
    super(message);
  }
}

/** The naming pairs every pair task accepts. */
export const GLUE_PAIR_FIELD_NAMES: readonly (readonly [string, string])[] = [
  ['sentence1', 'sentence2'],
  ['premise', 'hypothesis'],
  ['question', 'sentence'],
  ['question1', 'question2'],
];
/** The names a single-sentence task accepts. */
export const GLUE_SINGLE_FIELD_NAMES: readonly string[] = ['sentence', 'sentence1'];
/** Second-text names that a single-sentence task refuses rather than ignores. */
const SECOND_TEXT_NAMES = ['sentence2', 'hypothesis', 'question2'];

export interface GlueTexts {
  textA: string;
  /** null for single-sentence tasks. */
  textB: string | null;
}

const has = (o: object, k: string): boolean =>
  Object.prototype.hasOwnProperty.call(o, k) && (o as Record<string, unknown>)[k] !== undefined;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function text(task: GlueTaskName, body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string') {
    throw new GlueInputError(
      task,
      field,
      'invalid',
      `${task}: field "${field}" must be a string, got ${describe(v)}`,
    );
  }
  return v;
}

/**
 * Pulls the task's text(s) out of a request object (pure; no trimming, no length checks: the tokenizer
 * truncates). Throws {@link GlueInputError} naming the missing / invalid / conflicting field.
 */
export function extractGlueTexts(task: GlueTask | GlueTaskName, body: unknown): GlueTexts {
  const t = typeof task === 'string' ? GLUE_TASKS[task] : task;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GlueInputError(
      t.name,
      null,
      'not-an-object',
      `${t.name}: the request must be a JSON object, got ${describe(body)}`,
    );
  }
  const o = body as Record<string, unknown>;
  if (t.inputs === 'single') {
    const present = GLUE_SINGLE_FIELD_NAMES.filter((k) => has(o, k));
    const extra = SECOND_TEXT_NAMES.find((k) => has(o, k));
    if (extra !== undefined) {
      throw new GlueInputError(
        t.name,
        extra,
        'unexpected',
        `${t.name} takes a single sentence; unexpected field "${extra}"`,
      );
    }
    if (present.length > 1) {
      throw new GlueInputError(
        t.name,
        present[1]!,
        'ambiguous',
        `${t.name}: give either "sentence" or "sentence1", not both`,
      );
    }
    const field = present[0];
    if (field === undefined) {
      throw new GlueInputError(t.name, t.fields[0], 'missing', `${t.name}: missing field "${t.fields[0]}"`);
    }
    return { textA: text(t.name, o, field), textB: null };
  }
  const used = GLUE_PAIR_FIELD_NAMES.filter(([a, b]) => has(o, a) || has(o, b));
  if (used.length > 1) {
    const names = used.flatMap(([a, b]) => [a, b].filter((k) => has(o, k)));
    throw new GlueInputError(
      t.name,
      names[1] ?? null,
      'ambiguous',
      `${t.name}: use one pair of field names (got ${names.map((n) => `"${n}"`).join(', ')})`,
    );
  }
  const [fa, fb] = used[0] ?? t.fields;
  const alternatives = GLUE_PAIR_FIELD_NAMES.map(([a, b]) => `${a}/${b}`).join(', ');
  for (const f of [fa, fb]) {
    if (!has(o, f)) {
      throw new GlueInputError(
        t.name,
        f,
        'missing',
        `${t.name}: missing field "${f}" (pairs accepted: ${alternatives})`,
      );
    }
  }
  return { textA: text(t.name, o, fa), textB: text(t.name, o, fb) };
}
