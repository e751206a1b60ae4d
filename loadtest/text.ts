/**
 * GLUE-like request bodies without datasets: sentences drawn from a seeded word list, with per-task length
 * profiles close to the real dev sets (word counts: MNLI premises ~22 words and hypotheses ~11, QQP questions
 * ~11, SST-2 ~19, STS-B ~10, RTE premises ~43) and a 5% long tail (up to ~3×) so that every length bucket of the
 * batcher is exercised. Deterministic for a seed.
 */
import { GLUE_TASKS, GLUE_TASK_NAMES, type GlueTaskName } from '../src/preprocess/glue-tasks.js';
import { normal, pick, seededRandom, type Random } from './random.js';

const WORDS = `the a an of to in and that is was for on with as by at from it he she they we you this his her
their its be have has had were are been not but or which one all would there what so up out if about who get
can more when time year people way day man woman child world life hand part place case week company system
program question work government number night point home water room mother area money story fact month lot
right study book eye job word business issue side kind head house service friend father power hour game line
end member law car city community name president team minute idea kid body information back parent face others
level office door health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy everything process music market sense nation plan college interest
death experience effect use class control care field development role effort rate heart drug show leader light
voice wife police mind price report decision son view relationship town road arm difference value building
action model season society tax director position player record paper space ground form event official matter
center couple site project activity star table need court american oil situation cost industry figure street
image phone data picture practice piece land product doctor wall patient worker news test movie north love
support technology step baby computer type attention film tree source organization hair window evidence
population site training university department language region television chance approach performance
agreement analysis environment management knowledge individual understanding discussion investigation
significantly particularly unfortunately nevertheless extraordinary responsibility photographs quickly
beautiful difficult important political economic national possible available likely early large young small
little great good new old long big high different local social real best better free strong whole clear
recent certain personal open red white black short easy hard simple serious ready green final main said went
came took made found gave told became left felt brought began kept held wrote stood heard let meant set met
paid sat spoke lay led read grew lost fell sent built understood drew broke spent cut rose drove bought wore
chose`.split(/\s+/);

const QUESTION_STARTS = [
  'what',
  'how',
  'why',
  'who',
  'when',
  'where',
  'which',
  'is',
  'can',
  'does',
  'should',
];

interface LengthProfile {
  /** Mean and standard deviation of the word count of text_a (and text_b for pair tasks). */
  a: readonly [number, number];
  b?: readonly [number, number];
  question?: boolean;
}

const PROFILES: Record<GlueTaskName, LengthProfile> = {
  cola: { a: [8, 3] },
  sst2: { a: [19, 9] },
  mrpc: { a: [22, 6], b: [22, 6] },
  qqp: { a: [11, 5], b: [11, 5], question: true },
  stsb: { a: [10, 4], b: [10, 4] },
  mnli: { a: [22, 10], b: [11, 4] },
  qnli: { a: [10, 3], b: [28, 12], question: true },
  rte: { a: [43, 25], b: [9, 4] },
  wnli: { a: [20, 8], b: [10, 3] },
};

function wordCount(random: Random, [mean, sd]: readonly [number, number]): number {
  const tail = random() < 0.05 ? 2 + random() : 1;
  return Math.max(2, Math.min(150, Math.round(normal(random, mean, sd) * tail)));
}

export function sentence(random: Random, words: number, question = false): string {
  const out: string[] = [];
  if (question) out.push(pick(random, QUESTION_STARTS));
  while (out.length < words) {
    out.push(pick(random, WORDS));
    if (out.length > 3 && out.length < words - 2 && random() < 0.06) out[out.length - 1] += ',';
  }
  out[0] = out[0]!.charAt(0).toUpperCase() + out[0]!.slice(1);
  return `${out.join(' ')}${question ? '?' : '.'}`;
}

export interface GlueRequest {
  task: GlueTaskName;
  body: Record<string, string>;
}

export function isGlueTask(name: string): name is GlueTaskName {
  return (GLUE_TASK_NAMES as readonly string[]).includes(name);
}

/** One request body for a task: `{sentence}` for single-sentence tasks, `{sentence1, sentence2}` for pairs. */
export function glueRequest(random: Random, task: GlueTaskName): GlueRequest {
  const p = PROFILES[task];
  const a = sentence(random, wordCount(random, p.a), p.question);
  if (GLUE_TASKS[task].inputs === 'single') return { task, body: { sentence: a } };
  const b = sentence(random, wordCount(random, p.b ?? p.a), task === 'qqp');
  return { task, body: { sentence1: a, sentence2: b } };
}

/** `count` requests cycling through the tasks, reproducible for a seed. */
export function glueRequests(tasks: readonly GlueTaskName[], count: number, seed: number): GlueRequest[] {
  if (!tasks.length) throw new Error('no GLUE tasks');
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, i) => glueRequest(random, tasks[i % tasks.length]!));
}

export function wordsOf(body: Record<string, string>): number {
  return Object.values(body).reduce((n, s) => n + s.split(/\s+/).length, 0);
}
