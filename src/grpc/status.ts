/**
 * padserve's named failures as gRPC statuses. The reason → code table follows the HTTP status each reason has
 * (src/observability/errors.ts) the way google.rpc.Code documents its HTTP mapping: 400 INVALID_ARGUMENT,
 * 401 UNAUTHENTICATED, 403 PERMISSION_DENIED (`admin_api_off`), 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED. A body or
 * tensor over the size limits is RESOURCE_EXHAUSTED too, as grpc-js answers a message over the receive limit.
 * The trailers carry the precise machine code (`padserve-code`), the reason (`padserve-error-type`) and
 * `retry-after` (seconds) where HTTP sends a Retry-After header.
 */
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { ServeError, type FailureReason } from '../observability/errors.js';
import { toServeError } from '../inference/error-mapping.js';

export const REASON_GRPC: Record<FailureReason, Status> = {
  invalid_input: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  payload_too_large: Status.RESOURCE_EXHAUSTED,
  unsupported_media_type: Status.INVALID_ARGUMENT,
  unauthorized: Status.UNAUTHENTICATED,
  rejected_queue_full: Status.RESOURCE_EXHAUSTED,
  deadline_exceeded: Status.DEADLINE_EXCEEDED,
  client_cancelled: Status.CANCELLED,
  not_ready: Status.UNAVAILABLE,
  draining: Status.UNAVAILABLE,
  worker_failed: Status.UNAVAILABLE,
  internal: Status.INTERNAL,
};

/** An error as the gRPC status to answer with (unknown errors: INTERNAL with a generic message). */
export function grpcError(err: unknown): { error: ServeError; bug: boolean; status: Partial<ServiceError> } {
  const { error, bug } = toServeError(err);
  const metadata = new Metadata();
  metadata.set('padserve-code', error.code);
  metadata.set('padserve-error-type', error.reason);
  if (error.retryAfterS !== undefined) metadata.set('retry-after', String(error.retryAfterS));
  return {
    error,
    bug,
    status: {
      code: error.status === 403 ? Status.PERMISSION_DENIED : REASON_GRPC[error.reason],
      details: error.message,
      metadata,
    },
  };
}
