/**
 * What every gRPC call goes through, as HTTP's hooks (src/routes/hooks.ts) are for every route:
 *
 * - Inference calls get what HTTP's inference hooks give a request (src/routes/hooks.ts): the API token
 *   (`authorization: Bearer …` metadata), refusal while draining, a RequestTrack whose deadline is the gRPC
 *   deadline (never later than `--request-timeout-ms`) and whose abort signal fires when the call is cancelled,
 *   the in-flight count the drain waits for, and the same request metrics with the gRPC method path as route.
 * - Repository calls need the admin token, as the HTTP model-control routes do.
 * - Every failure becomes the gRPC status of its reason (status.ts).
 */
import { Metadata } from '@grpc/grpc-js';
import type * as grpc from '@grpc/grpc-js';
import { ServeError } from '../observability/errors.js';
import type { Outcome } from '../observability/metrics.js';
import { bearerMatches } from '../inference/bearer.js';
import { finish, RequestTrack, timingValues, type ServerContext } from '../inference/server-context.js';
import { grpcError } from './status.js';
import type { Logger } from '../observability/logging.js';

export const SERVICE = '/inference.GRPCInferenceService';

export type Handler<Req, Res> = (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res;

function metadataToken(call: grpc.ServerUnaryCall<unknown, unknown>): string | undefined {
  const v = call.metadata.get('authorization')[0];
  return typeof v === 'string' ? v : undefined;
}

/** A unary handler whose thrown errors become gRPC statuses. */
/** Bugs are logged with their stack (`{ err }`), as HTTP's handler does. */
export function unary<Req, Res>(log: Logger, handler: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
        (res) => callback(null, res),
        (err: unknown) => {
          const { status, bug } = grpcError(err);
          if (bug) log.error({ err, method: call.getPath() }, 'internal error');
          callback(status, null);
        },
      );
  };
}

/** A handler that needs the admin token (repository calls); off (UNIMPLEMENTED-like 404) without one. */
export function adminOnly<Req, Res>(ctx: ServerContext, handler: Handler<Req, Res>): Handler<Req, Res> {
  return (req, call) => {
    if (!ctx.adminToken)
      throw new ServeError(
        'unauthorized',
        'admin_api_off',
        'model control is off (start padserve with --admin-token to enable it)',
      );
    if (!bearerMatches(metadataToken(call), ctx.adminToken))
      throw new ServeError('unauthorized', 'unauthorized', 'admin API: missing or wrong bearer token');
    return handler(req, call);
  };
}

/** HTTP's timing headers (x-queue-time, ...; milliseconds) as the response's initial metadata. */
export function timingMetadata(t: RequestTrack): Metadata {
  const md = new Metadata();
  for (const [name, value] of timingValues(t)) md.set(name, value);
  return md;
}

/**
 * A cancellation this close to the deadline is the client's own deadline timer, not a client giving up: the client
 * counts its deadline from the send, the server from the header's arrival, so the client's cancel reaches the
 * server before the server's deadline by the transit and event-loop delay (tens of ms on a loaded 2-core machine:
 * test/http/grpc-lifecycle.test.ts "DEADLINE_EXCEEDED when…" saw it labelled client_cancelled at load 1.5).
 */
const DEADLINE_CANCEL_SLACK_MS = 100;

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>, defaultMs: number): number {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  const ms = Number.isFinite(at) ? Math.min(defaultMs, at - Date.now()) : defaultMs;
  return performance.now() + ms;
}

/**
 * Runs an inference handler under a RequestTrack: auth, draining, deadline, cancellation, in-flight count and
 * metrics, as HTTP's hooks do for an inference route.
 */
export function tracked<Req, Res>(
  ctx: ServerContext,
  method: string,
  handler: (req: Req, track: RequestTrack, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): Handler<Req, Res> {
  const route = `${SERVICE}/${method}`;
  return async (req, call) => {
    try {
      if (ctx.apiToken && !bearerMatches(metadataToken(call), ctx.apiToken))
        throw new ServeError('unauthorized', 'unauthorized', 'missing or wrong bearer token');
      if (ctx.lifecycle.draining)
        throw new ServeError(
          'draining',
          'shutting_down',
          'the server is shutting down; retry on another replica',
          { retryAfterS: ctx.limits.retryAfterS },
        );
    } catch (err) {
      ctx.metrics.observeRequest(route, 'none', (err as ServeError).reason, 0);
      throw err;
    }
    const t = new RequestTrack(route, deadlineOf(call, ctx.limits.requestTimeoutMs));
    ctx.lifecycle.inflight++;
    ctx.metrics.inflight.inc();
    const onCancel = () => {
      // The client went away (or its deadline passed, which grpc-js answers itself): drop the queued rows.
      t.controller.abort();
      const expired = performance.now() >= t.deadline - DEADLINE_CANCEL_SLACK_MS;
      const outcome: Outcome = expired ? 'deadline_exceeded' : 'client_cancelled';
      finish(ctx, t, outcome);
    };
    call.once('cancelled', onCancel);
    try {
      const res = await handler(req, t, call);
      call.sendMetadata(timingMetadata(t));
      finish(ctx, t, 'ok');
      return res;
    } catch (err) {
      finish(ctx, t, grpcError(err).error.reason);
      throw err;
    } finally {
      call.off('cancelled', onCancel);
      ctx.lifecycle.inflight--;
      ctx.metrics.inflight.dec();
    }
  };
}
