/**
 * WordPiece (greedy longest-match-first), exactly as Hugging Face's `WordpieceTokenizer` / the Rust `WordPiece`
 * model: a word longer than `maxInputCharsPerWord` code points (100) is `[UNK]`; otherwise take the longest vocab
 * entry that prefixes the rest of the word (`##`-prefixed after the first piece); if at some point nothing
 * matches, the whole word is a single `[UNK]`.
 *
 * Lengths and slicing are in code points (python `list(token)` / Rust `chars()`), so astral characters (emoji)
 * are never split in halves. Lookups are Map hits on string slices; the candidate end starts at the longest vocab
 * entry's length rather than the word's end (a longer slice cannot be in the vocab, so the result is the same).
 */
import { type BertVocab, UNK_TOKEN } from './vocab.js';

export interface WordPieceOptions {
  unkToken?: string;
  /** Words with more code points than this are `[UNK]` (HF default 100). */
  maxInputCharsPerWord?: number;
  continuingSubwordPrefix?: string;
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff || i === 0 || (s.charCodeAt(i - 1) & 0xfc00) !== 0xd800) n++;
  }
  return n;
}

function hasSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) if ((s.charCodeAt(i) & 0xf800) === 0xd800) return true;
  return false;
}

export class WordPiece {
  readonly unkId: number;
  readonly maxInputCharsPerWord: number;
  /** Every vocab entry (as HF: the first piece is looked up in the whole vocab). */
  private readonly initial: Map<string, number>;
  /** Continuation entries with the prefix removed. */
  private readonly continuation: Map<string, number>;
  /** Longest entry, in code points (continuations counted without their prefix). */
  private readonly maxPiece: number;

  constructor(vocab: BertVocab, opts: WordPieceOptions = {}) {
    const unk = opts.unkToken ?? UNK_TOKEN;
    const prefix = opts.continuingSubwordPrefix ?? '##';
    const unkId = vocab.id(unk);
    if (unkId === undefined) throw new Error(`WordPiece: ${unk} is not in the vocab`);
    this.unkId = unkId;
    this.maxInputCharsPerWord = opts.maxInputCharsPerWord ?? 100;
    this.initial = new Map();
    this.continuation = new Map();
    let max = 1;
    vocab.tokens.forEach((t, id) => {
      this.initial.set(t, id);
      max = Math.max(max, codePoints(t));
      if (t.startsWith(prefix) && t.length > prefix.length) this.continuation.set(t.slice(prefix.length), id);
    });
    this.maxPiece = max;
  }

  /** Appends the ids of one (basic-tokenized) word to `out`; returns `out`. */
  encodeWord(word: string, out: number[]): number[] {
    if (word.length === 0) return out;
    if (!hasSurrogate(word)) {
      const n = word.length;
      return this.greedy(n, (s, e) => (s === 0 && e === n ? word : word.slice(s, e)), out);
    }
    // Words with astral characters: the same on code-point boundaries.
    const bounds: number[] = [0];
    for (let i = 0; i < word.length;) {
      i += word.codePointAt(i)! > 0xffff ? 2 : 1;
      bounds.push(i);
    }
    return this.greedy(bounds.length - 1, (s, e) => word.slice(bounds[s], bounds[e]), out);
  }

  /**
   * Longest-match-first over a word of `n` characters, `piece(s, e)` being characters s..e: the whole word
   * becomes [UNK] when it is too long or a position has no match (as HF's WordPiece does).
   */
  private greedy(n: number, piece: (start: number, end: number) => string, out: number[]): number[] {
    if (n > this.maxInputCharsPerWord) {
      out.push(this.unkId);
      return out;
    }
    const mark = out.length;
    let start = 0;
    while (start < n) {
      const map = start === 0 ? this.initial : this.continuation;
      let end = Math.min(n, start + this.maxPiece);
      let id: number | undefined;
      while (end > start) {
        id = map.get(piece(start, end));
        if (id !== undefined) break;
        end--;
      }
      if (id === undefined) {
        out.length = mark;
        out.push(this.unkId);
        return out;
      }
      out.push(id);
      start = end;
    }
    return out;
  }
}
