/**
 * Readiness gated on accuracy: a model's `serving.json` may name a small labelled golden set
 *
 *   "golden": { "folder": "golden/", "min_accuracy": 0.95 }
 *
 * `folder` is relative to the model's directory (`<repo>/<name>/`), made of plain names only (no absolute path,
 * no `.` / `..`, and it must not resolve outside the model's directory through a link). It holds images named
 * `<index>_<label>.<ext>` (e.g. `0029_0.png`), the label being one of the card's labels. A freshly loaded and
 * warmed version runs the set through its own preprocessing and micro-batcher before it is swapped in; below
 * `min_accuracy` the load fails with a named reason (`GoldenError.reason`), so the model stays unready, or, on a
 * reload, the version already serving keeps serving.
 *
 * The file naming and the scoring (accuracy, confusion matrix) are shared with `padserve eval`.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { extname, join, relative, isAbsolute, sep } from 'node:path';
import type { ImageRow } from '../batching/collate.js';

export interface GoldenSpec {
  /** Folder relative to the model's directory, normalised (segments joined by '/', no trailing slash). */
  folder: string;
  /** Fraction in [0, 1]. */
  min_accuracy: number;
}

/** Why a golden check failed (log lines, the model's status error, and the load-failure metric label). */
export type GoldenFailure =
  'golden_set_unreadable' | 'golden_set_empty' | 'golden_unlabelled' | 'golden_accuracy_below_minimum';

export class GoldenError extends Error {
  override name = 'GoldenError';
  readonly userFacing = true;
  constructor(
    readonly reason: GoldenFailure,
    message: string,
    readonly result: GoldenResult | null = null,
  ) {
    super(`${message} [${reason}]`);
  }
}

const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Validates the `golden` field of serving.json; `fail(msg)` throws the caller's config error. */
export function parseGoldenSpec(raw: unknown, where: string, fail: (msg: string) => never): GoldenSpec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    fail(`${where}: golden must be an object {"folder": "golden/", "min_accuracy": 0.95}`);
  const o = raw as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => k !== 'folder' && k !== 'min_accuracy');
  if (unknown.length)
    fail(`${where}: golden: unknown field(s) ${unknown.join(', ')} (known: folder, min_accuracy)`);
  const folder = o.folder;
  if (typeof folder !== 'string' || folder.length === 0 || folder.length > 512)
    fail(`${where}: golden.folder must be a non-empty relative folder name`);
  const f = folder as string;
  if (f.startsWith('/') || f.startsWith('\\') || /^[A-Za-z]:/.test(f) || f.includes('\\'))
    fail(`${where}: golden.folder must be relative to the model's folder, got ${JSON.stringify(f)}`);
  const segments = f.replace(/\/$/, '').split('/');
  for (const s of segments) {
    if (!SEGMENT_RE.test(s) || s === '.' || s === '..' || /^\.+$/.test(s))
      fail(
        `${where}: golden.folder ${JSON.stringify(f)}: "${s}" is not a plain folder name (letters, digits, . _ -; no "..")`,
      );
  }
  const min = o.min_accuracy;
  if (typeof min !== 'number' || !Number.isFinite(min) || min < 0 || min > 1)
    fail(`${where}: golden.min_accuracy must be a number in [0, 1], got ${JSON.stringify(min)}`);
  return { folder: segments.join('/'), min_accuracy: min as number };
}

// ---------------------------------------------------------------------------------------------------------------
// Labelled image folders (shared with `padserve eval`)

export const LABELLED_IMAGE_RE = /^(\d+)_(.+)\.(png|jpe?g|webp|gif|tiff?|avif)$/i;

export interface LabelledImage {
  file: string;
  /** The label from the file name (the text between the first '_' and the extension). */
  label: string;
  index: number;
}

/** The images of a folder named `<index>_<label>.<ext>`, by index (then name); other image files are listed in `skipped`. */
export function listLabelledImages(folder: string): { images: LabelledImage[]; skipped: string[] } {
  const images: LabelledImage[] = [];
  const skipped: string[] = [];
  for (const name of readdirSync(folder).sort()) {
    const m = LABELLED_IMAGE_RE.exec(name);
    const path = join(folder, name);
    if (!m || !statSync(path).isFile()) {
      if (/\.(png|jpe?g|webp|gif|tiff?|avif)$/i.test(name)) skipped.push(name);
      continue;
    }
    images.push({ file: path, label: m[2]!, index: Number(m[1]) });
  }
  images.sort((a, b) => a.index - b.index || a.file.localeCompare(b.file));
  return { images, skipped };
}

/** MIME type of an image file from its extension (what `padserve eval` sends). */
export function imageMimeType(file: string): string {
  const ext = extname(file).toLowerCase();
  if (ext === '.jpg' || ext === '.jpeg') return 'image/jpeg';
  if (ext === '.tif' || ext === '.tiff') return 'image/tiff';
  return `image/${ext.slice(1)}`;
}

export interface Prediction {
  file: string;
  label: string;
  /** null when the image could not be classified (error). */
  predicted: string | null;
  score?: number;
  error?: string;
}

export interface GoldenResult {
  images: number;
  correct: number;
  errors: number;
  accuracy: number;
  /** Row = true label, column = predicted label, in `labels` order; errors are not counted in it. */
  labels: string[];
  confusion: number[][];
  perClass: { label: string; images: number; correct: number; accuracy: number }[];
  misclassified: Prediction[];
}

/** Numeric labels in numeric order, others in string order. */
function labelOrder(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (a.trim() !== '' && b.trim() !== '' && Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a.localeCompare(b);
}

/** Accuracy, per-class accuracy and confusion matrix; `labels` orders the matrix (others seen are appended). */
export function score(predictions: readonly Prediction[], labels: readonly string[] = []): GoldenResult {
  const seen = new Set<string>();
  for (const p of predictions) {
    seen.add(p.label);
    if (p.predicted !== null) seen.add(p.predicted);
  }
  const order = [
    ...labels.filter((l) => seen.has(l)),
    ...[...seen].filter((l) => !labels.includes(l)).sort(labelOrder),
  ];
  const at = new Map(order.map((l, i) => [l, i]));
  const confusion = order.map(() => order.map(() => 0));
  let correct = 0;
  let errors = 0;
  for (const p of predictions) {
    if (p.predicted === null) {
      errors++;
      continue;
    }
    confusion[at.get(p.label)!]![at.get(p.predicted)!]!++;
    if (p.predicted === p.label) correct++;
  }
  const perClass = order
    .map((label) => {
      const mine = predictions.filter((p) => p.label === label);
      const ok = mine.filter((p) => p.predicted === label).length;
      return { label, images: mine.length, correct: ok, accuracy: mine.length ? ok / mine.length : 0 };
    })
    .filter((c) => c.images > 0);
  return {
    images: predictions.length,
    correct,
    errors,
    accuracy: predictions.length ? correct / predictions.length : 0,
    labels: order,
    confusion,
    perClass,
    misclassified: predictions.filter((p) => p.predicted !== p.label),
  };
}

/** The confusion matrix as a text table (rows: true label, columns: predicted). */
export function confusionTable(r: GoldenResult): string {
  const w =
    Math.max(4, ...r.labels.map((l) => l.length), ...r.confusion.flat().map((n) => String(n).length)) + 1;
  const head = `${'true\\pred'.padEnd(Math.max(9, w))}${r.labels.map((l) => l.padStart(w)).join('')}${'acc'.padStart(8)}`;
  const rows = r.labels.map((l, i) => {
    const c = r.perClass.find((p) => p.label === l);
    const acc = c ? `${(100 * c.accuracy).toFixed(1)}%` : '-';
    return `${l.padEnd(Math.max(9, w))}${r.confusion[i]!.map((n) => String(n).padStart(w)).join('')}${acc.padStart(8)}`;
  });
  return [head, ...rows].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// The readiness gate

/** What the gate needs of a served model version (ServedModel satisfies it). */
export interface GoldenTarget {
  readonly name: string;
  readonly version: number;
  readonly card: import('../model/card.js').ModelCard;
  readonly serving: { max_queue_size: number; max_batch_size: number };
  infer(
    rows: ImageRow[],
    opts: { deadline: number },
  ): Promise<{ value: Record<string, { data: Float32Array }> }[]>;
}

/** Resolves the golden folder inside the model's directory (links included); throws GoldenError otherwise. */
export function goldenFolder(modelDir: string, spec: GoldenSpec): string {
  const path = join(modelDir, ...spec.folder.split('/'));
  let real: string;
  let base: string;
  try {
    real = realpathSync(path);
    base = realpathSync(modelDir);
    if (!statSync(real).isDirectory()) throw new Error('not a folder');
  } catch (err) {
    throw new GoldenError(
      'golden_set_unreadable',
      `golden set ${spec.folder}: cannot read ${path} (${(err as Error).message})`,
    );
  }
  const rel = relative(base, real);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel))
    throw new GoldenError(
      'golden_set_unreadable',
      `golden set ${spec.folder}: resolves outside the model's folder`,
    );
  return real;
}

const GOLDEN_MAX_INPUT_PIXELS = 50_000_000;
const GOLDEN_DEADLINE_MS = 300_000;

/**
 * Runs the golden set through a loaded, warmed version (its own preprocessing and batcher) and throws a
 * `GoldenError` unless it reaches the minimum accuracy. Returns the score when it passes.
 */
export async function checkGolden(
  target: GoldenTarget,
  modelDir: string,
  spec: GoldenSpec,
): Promise<GoldenResult> {
  const card = target.card;
  const what = `model ${target.name} version ${target.version}: golden set ${spec.folder}`;
  if (card.family !== 'resnet')
    throw new GoldenError(
      'golden_set_unreadable',
      `${what}: golden sets are for image models, this is a ${card.family} model`,
    );
  const folder = goldenFolder(modelDir, spec);
  const { images } = listLabelledImages(folder);
  if (!images.length)
    throw new GoldenError('golden_set_empty', `${what}: no images named <index>_<label>.<ext> in ${folder}`);
  const unknown = [...new Set(images.map((i) => i.label).filter((l) => !card.labels.includes(l)))];
  if (unknown.length)
    throw new GoldenError(
      'golden_unlabelled',
      `${what}: label(s) ${unknown.slice(0, 5).join(', ')} are not among the model's labels`,
    );
  const output = card.outputs[0]!.name;
  const { imageToTensor } = await import('../preprocess/image.js');
  // Bounded concurrency: enough to fill batches, never more than the queue takes.
  const lanes = Math.max(
    1,
    Math.min(images.length, target.serving.max_queue_size, 2 * target.serving.max_batch_size),
  );
  const predictions: Prediction[] = new Array(images.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < images.length; i = next++) {
      const img = images[i]!;
      let data: Float32Array;
      try {
        data = (
          await imageToTensor(readFileSync(img.file), card.preprocess, {
            maxInputPixels: GOLDEN_MAX_INPUT_PIXELS,
          })
        ).data;
      } catch (err) {
        predictions[i] = { file: img.file, label: img.label, predicted: null, error: (err as Error).message };
        continue;
      }
      const [r] = await target.infer([{ kind: 'image', data }], {
        deadline: performance.now() + GOLDEN_DEADLINE_MS,
      });
      const logits = r!.value[output]!.data;
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      predictions[i] = { file: img.file, label: img.label, predicted: card.labels[best] ?? String(best) };
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  const result = score(predictions, card.labels);
  if (result.errors)
    throw new GoldenError(
      'golden_set_unreadable',
      `${what}: ${result.errors} image(s) could not be read (${predictions.find((p) => p.error)?.error ?? ''})`,
      result,
    );
  if (result.accuracy < spec.min_accuracy)
    throw new GoldenError(
      'golden_accuracy_below_minimum',
      `${what}: accuracy ${(100 * result.accuracy).toFixed(1)}% (${result.correct}/${result.images}) is below the minimum ${(100 * spec.min_accuracy).toFixed(1)}%`,
      result,
    );
  return result;
}
