/**
 * The errors the core raises, as a `ServeError` (reason, code, status), for every transport: ours, and the
 * preprocessing modules' typed errors (their code names the reason, src/observability/error-codes.ts). Unknown
 * errors are bugs: `internal`, logged with their stack by the transport, and the client sees only a generic
 * message. The HTTP layer adds fastify's own errors in between (src/routes/errors.ts `httpServeError`).
 */
import { ERROR_CODES, type ErrorCode } from '../observability/error-codes.js';
import { ServeError, errorFor } from '../observability/errors.js';
import { GlueInputError, UnknownGlueTaskError, type GlueInputProblem } from '../preprocess/glue-tasks.js';
import { ImageError } from '../preprocess/image-errors.js';
import { PreprocessError } from '../preprocess/preprocess-pool.js';
import { TokenizerInputError } from '../preprocess/text/index.js';

export interface MappedError {
  error: ServeError;
  /** True for an error nobody named: a bug (500 / INTERNAL, logged with its stack). */
  bug: boolean;
}

const GLUE_PROBLEM_CODES = {
  'not-an-object': 'glue_not_an_object',
  missing: 'glue_missing',
  invalid: 'glue_invalid',
  ambiguous: 'glue_ambiguous',
  unexpected: 'glue_unexpected',
} as const satisfies Record<GlueInputProblem, ErrorCode>;

/** A `ServeError` or one of the preprocessing modules' errors as a `ServeError`; null for any other error. */
export function coreServeError(err: unknown): MappedError | null {
  if (err instanceof ServeError) return { error: err, bug: false };
  if (err instanceof ImageError || err instanceof PreprocessError) {
    if (ERROR_CODES[err.code].reason === 'internal')
      return { error: errorFor(err.code, 'model preprocessing is misconfigured', { cause: err }), bug: true };
    return { error: errorFor(err.code, err.message), bug: false };
  }
  if (err instanceof UnknownGlueTaskError)
    return { error: new ServeError('not_found', 'unknown_task', err.message), bug: false };
  if (err instanceof GlueInputError) {
    return {
      error: new ServeError(
        'invalid_input',
        GLUE_PROBLEM_CODES[err.problem],
        err.message,
        err.field ? { details: { field: err.field } } : {},
      ),
      bug: false,
    };
  }
  if (err instanceof TokenizerInputError)
    return { error: new ServeError('invalid_input', 'invalid_text', err.message), bug: false };
  return null;
}

/** An error nobody named: 500 `internal` with a generic message (the original is the cause, for the log). */
export function internalError(err: unknown): MappedError {
  return {
    error: new ServeError('internal', 'internal', 'internal server error', { cause: err }),
    bug: true,
  };
}

/** Any error as a `ServeError` (the gRPC service's mapping: no framework errors reach it). */
export function toServeError(err: unknown): MappedError {
  return coreServeError(err) ?? internalError(err);
}
