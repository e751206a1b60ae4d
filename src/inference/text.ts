/** Text checks and token rows shared by the GLUE route and the V2 pipeline (transport-neutral). */
import type { TokenRow } from '../batching/collate.js';
import { invalidInput, ServeError } from '../observability/errors.js';

/** False when the string holds a lone UTF-16 surrogate (JSON can carry one as an escape; UTF-8 cannot). */
export function isWellFormed(s: string): boolean {
  return !/\p{Cs}/u.test(s);
}

export function checkText(s: string, max: number, where: string): void {
  if (s.length === 0) throw invalidInput('empty_text', `${where}: empty text`);
  if (s.length > max)
    throw new ServeError(
      'payload_too_large',
      'text_too_long',
      `${where}: ${s.length} characters, at most ${max} accepted`,
      { details: { limit: max } },
    );
  if (!isWellFormed(s))
    throw invalidInput('invalid_text', `${where}: not well-formed Unicode (lone surrogate)`);
}

export function tokenRow(ids: readonly number[], types: readonly number[]): TokenRow {
  return {
    kind: 'tokens',
    ids: BigInt64Array.from(ids, (v) => BigInt(v)),
    mask: new BigInt64Array(ids.length).fill(1n),
    types: BigInt64Array.from(types, (v) => BigInt(v)),
  };
}
