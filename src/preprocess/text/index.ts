/** BERT uncased text preprocessing: vocab, BasicTokenizer, WordPiece, pair encoding and batching to tensors. */
export {
  BertVocab,
  loadBertVocab,
  defaultBertVocabPath,
  generateBertVocabFromPackage,
  BERT_UNCASED_VOCAB_MD5,
  PAD_ID,
  UNK_ID,
  CLS_ID,
  SEP_ID,
  MASK_ID,
} from './vocab.js';
export { basicTokenize, isChineseChar, isControl, isPunctuation, isWhitespace } from './basic.js';
export { WordPiece } from './wordpiece.js';
export { BertTokenizer, TokenizerInputError, padBatch, truncatedLengths, type Truncation } from './encode.js';
