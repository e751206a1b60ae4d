/**
 * Every error an HTTP request can meet, as a `ServeError` (reason, code, status): the core's
 * (src/inference/error-mapping.ts: ours and the preprocessing modules'), fastify's and @fastify/multipart's
 * (their status names the reason: the HTTP layer chose it). Unknown errors are bugs: 500 `internal`, logged with
 * their stack, and the client sees only a generic message. Also the error body's schema for the OpenAPI document.
 */
import { coreServeError, internalError, type MappedError } from '../inference/error-mapping.js';
import { codesWithStatus, type ErrorCode } from '../observability/error-codes.js';
import { ServeError, errorFor, type ErrorBody } from '../observability/errors.js';

interface FrameworkError extends Error {
  code?: string;
  statusCode?: number;
  validation?: unknown[];
  validationContext?: string;
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty_body',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_TYPE: 'missing_content_type',
  FST_ERR_CTP_INVALID_TYPE: 'invalid_content_type',
  FST_REQ_FILE_TOO_LARGE: 'file_too_large',
  FST_PARTS_LIMIT: 'too_many_parts',
  FST_FILES_LIMIT: 'too_many_files',
  FST_FIELDS_LIMIT: 'too_many_fields',
  FST_PROTO_VIOLATION: 'invalid_multipart',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'not_multipart',
};

/**
 * Any error as a `ServeError`: the core's (src/inference/error-mapping.ts) first, then fastify's and
 * @fastify/multipart's (their status names the reason: the HTTP layer chose it), else a bug.
 */
export function httpServeError(err: unknown): MappedError {
  return coreServeError(err) ?? frameworkServeError(err) ?? internalError(err);
}

function frameworkServeError(err: unknown): MappedError | null {
  const fe = err as FrameworkError;
  if (fe && Array.isArray(fe.validation)) {
    return {
      error: new ServeError('invalid_input', 'invalid_request', fe.message, { status: 400 }),
      bug: false,
    };
  }
  const status = fe?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // fastify chose the status; the code (and so the reason) is the registry's name for fastify's code.
    const code = (fe.code && FASTIFY_CODES[fe.code]) || 'bad_request';
    return { error: errorFor(code, fe.message, { status }), bug: false };
  }
  return null;
}

/** JSON schema of the error body (every route's 4xx/5xx responses). */
export const errorSchema = {
  $id: 'padserve.error',
  type: 'object',
  description: 'Every error: a human message, a stable machine code, and the failure reason (metric label).',
  required: ['error', 'code', 'error_type'],
  properties: {
    error: { type: 'string' },
    code: { type: 'string' },
    error_type: { type: 'string' },
    details: { type: 'object', additionalProperties: true },
  },
} as const;

export type { ErrorBody };

/** Response schemas for the error statuses a route can answer with. */
export function errorResponses(...statuses: number[]): Record<number, { $ref: string; description: string }> {
  const text: Record<number, string> = {
    400: 'invalid input',
    401: 'missing or wrong token',
    403: 'model control is off (no admin token configured)',
    404: 'unknown model, version or task',
    406: 'multipart body without a boundary',
    413: 'body, image or text too large',
    415: 'unsupported media type',
    429: 'queue full (see Retry-After)',
    500: 'bug',
    503: 'not ready, draining, or worker failed (see Retry-After)',
    504: 'deadline exceeded while queued',
  };
  return Object.fromEntries(
    statuses.map((s) => {
      const codes = codesWithStatus(s);
      const description = `${text[s] ?? 'error'}${codes.length ? ` (code: ${codes.join(', ')})` : ''}`;
      return [s, { $ref: 'padserve.error#', description }];
    }),
  );
}
