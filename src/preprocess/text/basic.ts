/**
 * BERT's BasicTokenizer for the uncased models, exactly as Hugging Face's python `BasicTokenizer`
 * (transformers, `do_lower_case=True`, `tokenize_chinese_chars=True`, `strip_accents=None`) and the Rust
 * `BertNormalizer` + `BertPreTokenizer` of `BertTokenizerFast` do it:
 *
 * 1. clean text: drop U+0000, U+FFFD and every "control" character — HF's `_is_control` is any general category
 *    C* (Cc, Cf, Cs, Co, Cn) except `\t \n \r`. Dropped characters join their neighbours ("a\u200Bb" → "ab",
 *    "a\vb" → "ab"). `\t \n \r` and Zs are whitespace.
 * 2. CJK ideographs (the code point ranges of HF's python `_is_chinese_char`, see {@link isChineseChar}) become
 *    words of their own.
 * 3. whitespace split: Zs, `\t \n \r` and U+2028 / U+2029 (python's `str.split()` also splits on those two).
 * 4. per word: NFC, lower-case **per character** (HF lower-cases character by character: the slow tokenizer's
 *    `tokenize()` pre-pass and Rust's `char::to_lowercase`, so a word-final Σ becomes σ, never ς), then NFD and drop
 *    every Mn (so repeated combining marks all go).
 * 5. punctuation split (after normalisation, as HF does): ASCII 33–47, 58–64, 91–96, 123–126 and Unicode P*;
 *    each punctuation character is a word. Non-ASCII symbols (S*: €, ©, emoji) are *not* punctuation.
 *
 * Fast path: ASCII is classified by table in a single pass and needs no Unicode normalisation; only words that
 * contain a non-ASCII character go through `normalize()` and the Unicode property checks (cached per BMP code
 * point). Character properties come from the running Node's Unicode tables (ICU), Python's from its
 * `unicodedata`: characters assigned in one Unicode version and not the other can differ (unassigned = Cn is
 * removed as control).
 *
 * Known differences between HF's own two implementations, and what is done here (the python one):
 * - `_is_chinese_char` has 0x2B820–0x2CEAF; the Rust normalizer has 0x2B920–0x2CEAF (so U+2B820–U+2B91F are split
 *   by BertTokenizer only). Here: the python ranges.
 * - python NFC-normalises before splitting; Rust does not. No practical effect (NFD follows), kept for fidelity.
 */

/** Code-point classes. */
const ORD = 0; // part of a word
const WS = 1; // whitespace: ends a word
const CTRL = 2; // removed
const PUNCT = 3; // a word of its own
const CJK = 4; // a word of its own
const UNKNOWN = 255;

const RE_ZS = /^\p{Zs}$/u;
const RE_C = /^\p{C}$/u;
const RE_P = /^\p{P}$/u;

/** HF `_is_chinese_char` (transformers, python): the CJK Unified Ideographs blocks and compatibility blocks. */
export function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** HF `_is_punctuation`: the ASCII non-alphanumeric printables and every Unicode P* character. */
export function isPunctuation(cp: number): boolean {
  if (cp < 128)
    return (
      (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)
    );
  return RE_P.test(String.fromCodePoint(cp));
}

/** HF `_is_control`: general category C* except tab, newline, carriage return. */
export function isControl(cp: number): boolean {
  if (cp === 9 || cp === 10 || cp === 13) return false;
  return RE_C.test(String.fromCodePoint(cp));
}

/** HF `_is_whitespace`: space, tab, newline, carriage return, Zs. */
export function isWhitespace(cp: number): boolean {
  return cp === 32 || cp === 9 || cp === 10 || cp === 13 || RE_ZS.test(String.fromCodePoint(cp));
}

function classify(cp: number): number {
  if (cp === 0 || cp === 0xfffd) return CTRL;
  // python's str.split() (whitespace_tokenize) also splits on U+2028 / U+2029 (Zl / Zp): neither control nor Zs
  if (isWhitespace(cp) || cp === 0x2028 || cp === 0x2029) return WS;
  if (isControl(cp)) return CTRL;
  if (isChineseChar(cp)) return CJK;
  if (isPunctuation(cp)) return PUNCT;
  return ORD;
}

/** Class per BMP code point, filled on first sight (the ASCII range up front). */
const BMP = new Uint8Array(0x10000).fill(UNKNOWN);
for (let c = 0; c < 128; c++) BMP[c] = classify(c);
const ASTRAL = new Map<number, number>();

function classOf(cp: number): number {
  if (cp < 0x10000) {
    let k = BMP[cp]!;
    if (k === UNKNOWN) BMP[cp] = k = classify(cp);
    return k;
  }
  let k = ASTRAL.get(cp);
  if (k === undefined) {
    k = classify(cp);
    if (ASTRAL.size < 65536) ASTRAL.set(cp, k);
  }
  return k;
}

const MN = /\p{Mn}/gu;

/** Lower-case, strip accents and punctuation-split one word that contains non-ASCII characters; pushes the pieces. */
function normalizeWord(word: string, out: string[]): void {
  let s = word.normalize('NFC');
  // per-character lower-casing: String.prototype.toLowerCase applies Final_Sigma (Σ → ς at the end of a word),
  // HF does not (Σ → σ everywhere). Σ is the only context-dependent mapping of toLowerCase.
  if (s.includes('\u03a3')) s = s.replaceAll('\u03a3', '\u03c3');
  s = s.toLowerCase().normalize('NFD').replace(MN, '');
  // punctuation split on the normalised text (NFD can turn a symbol into punctuation: U+1FEF → "`")
  let start = 0;
  for (let i = 0; i < s.length;) {
    const cp = s.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    const k = classOf(cp);
    if (k === PUNCT || k === WS) {
      if (i > start) out.push(s.slice(start, i));
      if (k === PUNCT) out.push(s.slice(i, i + w));
      start = i + w;
    }
    i += w;
  }
  if (s.length > start) out.push(start === 0 ? s : s.slice(start));
}

/**
 * Splits `text` into normalised words (lower-cased, accent-stripped, punctuation and CJK ideographs separate):
 * the input of WordPiece. Pushes onto `out` (returned).
 */
export function basicTokenize(text: string, out: string[] = []): string[] {
  const n = text.length;
  let buf = ''; // the current word's text so far (segments joined across removed characters)
  let seg = -1; // start of the current contiguous segment, -1 if none
  let upper = false; // the current word has an ASCII capital
  let wide = false; // the current word has a non-ASCII character

  const endWord = (i: number): void => {
    if (seg >= 0) {
      buf = buf.length === 0 ? text.slice(seg, i) : buf + text.slice(seg, i);
      seg = -1;
    }
    if (buf.length > 0) {
      if (wide) normalizeWord(buf, out);
      else out.push(upper ? buf.toLowerCase() : buf);
      buf = '';
    }
    upper = false;
    wide = false;
  };

  for (let i = 0; i < n;) {
    const c = text.charCodeAt(i);
    if (c < 128) {
      const k = BMP[c]!;
      if (k === ORD) {
        if (seg < 0) seg = i;
        if (c >= 65 && c <= 90) upper = true;
      } else if (k === WS) {
        endWord(i);
      } else if (k === PUNCT) {
        endWord(i);
        out.push(text[i]!);
      } else if (seg >= 0) {
        // CTRL: drop the character, keep the word going
        buf += text.slice(seg, i);
        seg = -1;
      }
      i++;
      continue;
    }
    const cp = text.codePointAt(i)!; // a lone surrogate comes back as itself: class CTRL (Cs)
    const w = cp > 0xffff ? 2 : 1;
    const k = classOf(cp);
    if (k === ORD) {
      if (seg < 0) seg = i;
      wide = true;
    } else if (k === WS) {
      endWord(i);
    } else if (k === CTRL) {
      if (seg >= 0) {
        buf += text.slice(seg, i);
        seg = -1;
      }
    } else {
      // PUNCT or CJK: a word of its own, normalised too (compatibility ideographs NFC/NFD to unified ones)
      endWord(i);
      if (k === CJK && cp >= 0x4e00 && cp <= 0x9fff) out.push(text.slice(i, i + w));
      else normalizeWord(text.slice(i, i + w), out);
    }
    i += w;
  }
  endWord(n);
  return out;
}
