/**
 * Every way a request can fail, named. A `FailureReason` is coarse and bounded (it becomes the `outcome` label of
 * the request metrics and the `error_type` of the JSON body); a `code` is the precise machine-readable cause
 * (`image_too_large`, `unknown_task`, `invalid_shape`, ...). `status` is the HTTP status to answer with.
 *
 * The codes, their reasons and statuses are one table: src/observability/error-codes.ts. A ServeError is built
 * reason first (`new ServeError(reason, code, ...)`, the code one of that reason's) or from a code alone
 * (`errorFor(code, ...)`, the reason looked up); the status follows from the code.
 *
 * Imported by every server layer (routes, repository, batching, runtime); imports nothing of them.
 */

import { ERROR_CODES, codeStatus, type CodeOf, type ErrorCode, type FailureReason } from './error-codes.js';

export { ERROR_CODES, type FailureReason, type ErrorCode } from './error-codes.js';

export interface ServeErrorOptions {
  /** Overrides the code's status (only for statuses the HTTP layer chose, e.g. fastify's 4xx). */
  status?: number;
  /** Seconds for a `Retry-After` header (429, 503). */
  retryAfterS?: number;
  /** Extra machine-readable facts, returned in the body as `details`. */
  details?: Record<string, string | number | boolean>;
  cause?: unknown;
}

class ServeErrorClass extends Error {
  override name = 'ServeError';
  readonly status: number;
  readonly retryAfterS: number | undefined;
  readonly details: Record<string, string | number | boolean> | undefined;

  constructor(
    readonly reason: FailureReason,
    readonly code: ErrorCode,
    message: string,
    opts: ServeErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status ?? codeStatus(code);
    this.retryAfterS = opts.retryAfterS;
    this.details = opts.details;
  }
}

/**
 * `new ServeError(reason, code, message, opts)`: the code must be one of the reason's (a compile error otherwise),
 * so the body's `error_type` and the registry cannot disagree.
 */
export const ServeError: new <R extends FailureReason>(
  reason: R,
  code: CodeOf<R>,
  message: string,
  opts?: ServeErrorOptions,
) => ServeErrorClass = ServeErrorClass;
export type ServeError = ServeErrorClass;

/**
 * Default seconds of `Retry-After` on 429 and on 503s that clear in about a second (draining, a failed worker,
 * a version unloaded mid-request): `--retry-after-s`.
 */
export const DEFAULT_RETRY_AFTER_S = 1;
/** Default seconds of `Retry-After` while a model loads or is not loaded (a load takes seconds): `--loading-retry-after-s`. */
export const DEFAULT_LOADING_RETRY_AFTER_S = 2;

/** A ServeError from its code alone: the reason (and status) come from the registry. */
export function errorFor(code: ErrorCode, message: string, opts: ServeErrorOptions = {}): ServeError {
  return new ServeError(ERROR_CODES[code].reason, code as never, message, opts);
}

/** Shorthands for the common cases. */
export const invalidInput = (
  code: CodeOf<'invalid_input'>,
  message: string,
  details?: ServeErrorOptions['details'],
) => new ServeError('invalid_input', code, message, { details });
/** The one wording of `unknown_model` (repository, V2 metadata, admin). */
export const unknownModel = (name: string) =>
  new ServeError('not_found', 'unknown_model', `unknown model "${name}"`);

/** The JSON error body: the same shape on every route. */
export interface ErrorBody {
  error: string;
  code: ErrorCode;
  error_type: FailureReason;
  details?: Record<string, string | number | boolean>;
}

export function errorBody(e: ServeError): ErrorBody {
  const body: ErrorBody = { error: e.message, code: e.code, error_type: e.reason };
  if (e.details) body.details = e.details;
  return body;
}

/** Reason for an HTTP status when no ServeError is at hand (framework errors, 404 of unknown routes). */
export function reasonForStatus(status: number): FailureReason {
  if (status === 404 || status === 405) return 'not_found';
  if (status === 413) return 'payload_too_large';
  if (status === 415) return 'unsupported_media_type';
  if (status === 401 || status === 403) return 'unauthorized';
  if (status === 429) return 'rejected_queue_full';
  if (status === 504) return 'deadline_exceeded';
  if (status === 503) return 'not_ready';
  if (status >= 400 && status < 500) return 'invalid_input';
  return 'internal';
}
