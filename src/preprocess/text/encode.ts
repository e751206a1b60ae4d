/**
 * BERT uncased encoding: text (or a text pair) → input_ids / token_type_ids / attention_mask, as Hugging Face's
 * `BertTokenizer` / `BertTokenizerFast` for bert-base-uncased (`tokenizer(a, b, truncation=True, max_length=128)`),
 * and batches of those → right-padded int64 tensors for the graph.
 *
 * Why our own code and not a library: `@huggingface/tokenizers` (0.2.0, pure JS; evaluated from its npm tarball,
 * not installed) has no truncation and gets edge cases wrong that HF gets right — astral CJK ideographs (U+20000…)
 * are not split (it tests UTF-16 units), a word-final Σ becomes ς (JS `toLowerCase` on the whole text, HF lower-cases
 * per character), unassigned (Cn) characters are kept — so it disagreed with HF's algorithm on 4,610 of 15,020
 * fuzzed strings (this code: 0 of 54,060 fuzzed strings and pairs) and needs a synthesised tokenizer.json. On
 * plain English both agree, and this code is 4–6× faster there (2-core dev box, README sentences of 26 tokens on
 * average: 1.2–3.2 M tokens/s here vs 0.33–0.54 M, the ranges being machine load). See basic.ts and wordpiece.ts
 * for the HF semantics kept.
 *
 * Special tokens in the input: as HF does by default (`split_special_tokens=False`), the exact strings `[CLS]`,
 * `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]` in the text are matched before normalisation and become their ids
 * (case-sensitive: `[cls]` is ordinary text). `splitSpecialTokens: true` treats them as ordinary text instead.
 *
 * Truncation (`longest_first`, the only strategy the server needs): the budget is `maxLength` minus the special
 * tokens (2 for one text, 3 for a pair); a single text keeps its first `budget` tokens. For pairs HF's two
 * implementations differ, both are available:
 * - `'longest_first'` (default) — python `PreTrainedTokenizerBase.truncate_sequences`: remove one token at a time
 *   from the end of the longer sequence; on a tie, from the second. When both must be cut and the budget is odd,
 *   the first text keeps the extra token: (a, b) → (⌈m/2⌉, ⌊m/2⌋).
 * - `'longest_first_tokenizers'` — Rust `tokenizers::truncate_encodings` (BertTokenizerFast, which run_glue.py
 *   uses by default): if only the longer must be cut, it keeps `m − shorter`; if both, the originally shorter
 *   (the first on a tie) gets ⌊m/2⌋ and the other ⌈m/2⌉.
 * The two agree except when both texts are cut, the budget m is odd and the first text was not strictly longer.
 */
import { int64Tensor, type HostTensor } from '../../tensor.js';
import { basicTokenize } from './basic.js';
import { WordPiece } from './wordpiece.js';
import {
  BERT_SPECIAL_TOKENS,
  type BertVocab,
  CLS_TOKEN,
  loadBertVocab,
  PAD_TOKEN,
  SEP_TOKEN,
  UNK_TOKEN,
} from './vocab.js';

export interface Encoding {
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
  /** The tokens of `inputIds` (`##` continuation form), when asked for (`returnTokens`). */
  tokens?: string[];
}

export type Truncation = 'longest_first' | 'longest_first_tokenizers';

export interface EncodeOptions {
  /** Total length including [CLS]/[SEP] (default 128). Must leave room for the special tokens. */
  maxLength?: number;
  /** Pair truncation semantics (default `'longest_first'`, python transformers). */
  truncation?: Truncation;
  returnTokens?: boolean;
}

export interface TextPair {
  a: string;
  b?: string | null;
}

export interface EncodedBatch {
  /** [batch, length] int64, right-padded with [PAD] = 0. */
  inputIds: HostTensor<'int64'>;
  /** [batch, length] int64: 1 for tokens, 0 for padding. */
  attentionMask: HostTensor<'int64'>;
  /** [batch, length] int64: 0 for [CLS] a [SEP], 1 for b [SEP], 0 for padding. */
  tokenTypeIds: HostTensor<'int64'>;
  /** Unpadded length of each row; the padded length is the largest of them. */
  lengths: number[];
}

export interface TokenizerOptions {
  /** vocab.txt to use instead of the bundled bert-base-uncased one. */
  vocabPath?: string;
  /** Treat `[CLS]`, `[SEP]`, … inside the text as ordinary text (HF `split_special_tokens=True`). Default false. */
  splitSpecialTokens?: boolean;
}

export const DEFAULT_MAX_LENGTH = 128;

export class TokenizerInputError extends Error {
  override name = 'TokenizerInputError';
}

/**
 * How many tokens of each sequence `longest_first` keeps when `lenA + lenB` must fit `budget` (special tokens
 * already subtracted). Pure; see the module comment for the two semantics.
 */
export function truncatedLengths(
  lenA: number,
  lenB: number,
  budget: number,
  truncation: Truncation = 'longest_first',
): [number, number] {
  if (budget < 0) throw new RangeError(`truncation budget ${budget} < 0`);
  if (lenA + lenB <= budget) return [lenA, lenB];
  if (truncation === 'longest_first') {
    // closed form of: repeat (lenA + lenB - budget) times { if (a > b) a--; else b--; }
    let a = lenA;
    let b = lenB;
    let r = a + b - budget;
    const d = Math.min(r, Math.abs(a - b));
    if (a > b) a -= d;
    else b -= d;
    r -= d;
    // now equal (or r = 0): alternate, second first
    b -= Math.ceil(r / 2);
    a -= Math.floor(r / 2);
    return [a, b];
  }
  let n1 = lenA;
  let n2 = lenB;
  const swap = n1 > n2;
  if (swap) [n1, n2] = [n2, n1];
  n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  if (swap) [n1, n2] = [n2, n1];
  return [Math.min(n1, lenA), Math.min(n2, lenB)];
}

const SPECIAL_RE = /\[(?:CLS|SEP|PAD|UNK|MASK)\]/g;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let defaultTokenizer: BertTokenizer | undefined;

export class BertTokenizer {
  readonly vocab: BertVocab;
  readonly wordPiece: WordPiece;
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
  readonly unkId: number;
  private readonly splitSpecialTokens: boolean;
  private readonly specialIds: Map<string, number>;

  constructor(vocab: BertVocab, opts: Omit<TokenizerOptions, 'vocabPath'> = {}) {
    this.vocab = vocab;
    this.wordPiece = new WordPiece(vocab);
    const need = (t: string): number => {
      const id = vocab.id(t);
      if (id === undefined) throw new Error(`BertTokenizer: ${t} is not in the vocab`);
      return id;
    };
    this.clsId = need(CLS_TOKEN);
    this.sepId = need(SEP_TOKEN);
    this.padId = need(PAD_TOKEN);
    this.unkId = need(UNK_TOKEN);
    this.specialIds = new Map(BERT_SPECIAL_TOKENS.map((t) => [t, need(t)]));
    this.splitSpecialTokens = opts.splitSpecialTokens ?? false;
  }

  /** The bert-base-uncased tokenizer (vocab from data/bert-base-uncased/vocab.txt). Default options are memoised. */
  static load(opts: TokenizerOptions = {}): BertTokenizer {
    const isDefault = opts.vocabPath === undefined && !opts.splitSpecialTokens;
    if (isDefault && defaultTokenizer) return defaultTokenizer;
    const vocab = loadBertVocab(opts.vocabPath === undefined ? {} : { path: opts.vocabPath });
    const tok = new BertTokenizer(vocab, { splitSpecialTokens: opts.splitSpecialTokens ?? false });
    if (isDefault) defaultTokenizer = tok;
    return tok;
  }

  /** Token ids of one text, without special tokens and without truncation. */
  textToIds(text: string, out: number[] = []): number[] {
    if (typeof text !== 'string') throw new TokenizerInputError(`text must be a string, got ${typeof text}`);
    if (this.splitSpecialTokens || !text.includes('[')) return this.plainToIds(text, out);
    let last = 0;
    for (const m of text.matchAll(SPECIAL_RE)) {
      this.plainToIds(text.slice(last, m.index), out);
      out.push(this.specialIds.get(m[0])!);
      last = m.index + m[0].length;
    }
    return this.plainToIds(last === 0 ? text : text.slice(last), out);
  }

  private plainToIds(text: string, out: number[]): number[] {
    if (text.length === 0) return out;
    const words = basicTokenize(text);
    for (const w of words) this.wordPiece.encodeWord(w, out);
    return out;
  }

  /** WordPiece tokens of one text (`##` continuations, `[UNK]`), as HF `tokenizer.tokenize(text)`. */
  tokenize(text: string): string[] {
    return this.textToIds(text).map((id) => this.vocab.tokens[id]!);
  }

  /** `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated `longest_first` to `maxLength` (default 128). */
  encode(a: string, b?: string | null, opts: EncodeOptions = {}): Encoding {
    const maxLength = opts.maxLength ?? DEFAULT_MAX_LENGTH;
    const pair = b !== null && b !== undefined;
    const specials = pair ? 3 : 2;
    if (!Number.isInteger(maxLength) || maxLength < specials) {
      throw new RangeError(`maxLength ${maxLength} leaves no room for the ${specials} special tokens`);
    }
    const idsA = this.textToIds(a);
    const idsB = pair ? this.textToIds(b) : [];
    const budget = maxLength - specials;
    let nA: number;
    let nB: number;
    if (pair) [nA, nB] = truncatedLengths(idsA.length, idsB.length, budget, opts.truncation);
    else [nA, nB] = [Math.min(idsA.length, budget), 0];

    const len = nA + nB + specials;
    const inputIds = new Array<number>(len);
    const tokenTypeIds = new Array<number>(len).fill(0);
    let k = 0;
    inputIds[k++] = this.clsId;
    for (let i = 0; i < nA; i++) inputIds[k++] = idsA[i]!;
    inputIds[k++] = this.sepId;
    if (pair) {
      const firstB = k;
      for (let i = 0; i < nB; i++) inputIds[k++] = idsB[i]!;
      inputIds[k++] = this.sepId;
      tokenTypeIds.fill(1, firstB);
    }
    const enc: Encoding = { inputIds, tokenTypeIds, attentionMask: new Array<number>(len).fill(1) };
    if (opts.returnTokens) enc.tokens = inputIds.map((id) => this.vocab.tokens[id]!);
    return enc;
  }

  /** Encodes every pair and pads them (right, [PAD] = 0, mask 0, type 0) to the longest row. */
  encodeBatch(pairs: readonly TextPair[], opts: Omit<EncodeOptions, 'returnTokens'> = {}): EncodedBatch {
    return padBatch(
      pairs.map((p) => this.encode(p.a, p.b, opts)),
      this.padId,
    );
  }
}

/** Right-pads encodings into [batch, longest] int64 tensors. An empty batch gives [0, 0] tensors. */
export function padBatch(encodings: readonly Encoding[], padId = 0): EncodedBatch {
  const batch = encodings.length;
  const lengths = encodings.map((e) => e.inputIds.length);
  const width = lengths.reduce((m, l) => Math.max(m, l), 0);
  const ids = new BigInt64Array(batch * width);
  const mask = new BigInt64Array(batch * width);
  const types = new BigInt64Array(batch * width);
  if (LITTLE_ENDIAN) {
    // ids are small non-negative ints: write the low 32-bit word of each int64 (the high word stays 0)
    const ids32 = new Int32Array(ids.buffer);
    const mask32 = new Int32Array(mask.buffer);
    const types32 = new Int32Array(types.buffer);
    encodings.forEach((e, r) => {
      const base = r * width;
      const n = e.inputIds.length;
      for (let j = 0; j < n; j++) {
        const o = (base + j) * 2;
        ids32[o] = e.inputIds[j]!;
        mask32[o] = e.attentionMask[j]!;
        types32[o] = e.tokenTypeIds[j]!;
      }
      if (padId !== 0) for (let j = n; j < width; j++) ids32[(base + j) * 2] = padId;
    });
  } else {
    encodings.forEach((e, r) => {
      const base = r * width;
      for (let j = 0; j < width; j++) {
        const inside = j < e.inputIds.length;
        ids[base + j] = BigInt(inside ? e.inputIds[j]! : padId);
        mask[base + j] = BigInt(inside ? e.attentionMask[j]! : 0);
        types[base + j] = BigInt(inside ? e.tokenTypeIds[j]! : 0);
      }
    });
  }
  const shape = [batch, width];
  return {
    inputIds: int64Tensor(ids, shape),
    attentionMask: int64Tensor(mask, shape),
    tokenTypeIds: int64Tensor(types, shape),
    lengths,
  };
}
