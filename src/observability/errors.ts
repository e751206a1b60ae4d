/**
 * Every way a request can fail, named. A `FailureReason` is coarse and bounded (it becomes the `outcome` label of
 * the request metrics and the `error_type` of the JSON body); a `code` is the precise machine-readable cause
 * (`image_too_large`, `unknown_task`, `invalid_shape`, ...). `status` is the HTTP status to answer with.
 *
 * Imported by every server layer (routes, repository, batching, runtime); imports nothing of them.
 */

export const FAILURE_REASONS = [
  'invalid_input',
  'not_found',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'rejected_queue_full',
  'deadline_exceeded',
  'client_cancelled',
  'not_ready',
  'draining',
  'worker_failed',
  'internal',
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/** Default HTTP status per reason. 499 (client closed request, nginx's convention) is never seen by a client. */
export const REASON_STATUS: Record<FailureReason, number> = {
  invalid_input: 400,
  not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthorized: 401,
  rejected_queue_full: 429,
  deadline_exceeded: 504,
  client_cancelled: 499,
  not_ready: 503,
  draining: 503,
  worker_failed: 503,
  internal: 500,
};

export interface ServeErrorOptions {
  /** Overrides the reason's default status (e.g. 422 or 405). */
  status?: number;
  /** Seconds for a `Retry-After` header (429, 503). */
  retryAfterS?: number;
  /** Extra machine-readable facts, returned in the body as `details`. */
  details?: Record<string, string | number | boolean>;
  cause?: unknown;
}

export class ServeError extends Error {
  override name = 'ServeError';
  readonly status: number;
  readonly retryAfterS: number | undefined;
  readonly details: Record<string, string | number | boolean> | undefined;

  constructor(
    readonly reason: FailureReason,
    readonly code: string,
    message: string,
    opts: ServeErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status ?? REASON_STATUS[reason];
    this.retryAfterS = opts.retryAfterS;
    this.details = opts.details;
  }
}

export function isServeError(e: unknown): e is ServeError {
  return e instanceof ServeError;
}

/** Shorthands for the common cases. */
export const invalidInput = (code: string, message: string, details?: ServeErrorOptions['details']) =>
  new ServeError('invalid_input', code, message, { details });
export const notFound = (code: string, message: string) => new ServeError('not_found', code, message);

/** The JSON error body: the same shape on every route. */
export interface ErrorBody {
  error: string;
  code: string;
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
