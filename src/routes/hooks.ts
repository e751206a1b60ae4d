/**
 * Cross-cutting request handling, as hooks (registered with fastify-plugin so they apply to every route):
 * request ids, inference-request tracking (deadline, cancellation on client disconnect, in-flight count,
 * refusal while draining), timing headers, the JSON error handler and the JSON 404.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { errorBody, ServeError, reasonForStatus } from '../observability/errors.js';
import { bearerMatches } from '../inference/bearer.js';
import { finish, RequestTrack } from '../inference/server-context.js';
import { deadlineFor, priorityFor, timingHeaders } from './context.js';
import { errorSchema, httpServeError } from './errors.js';

/** Connections accepted while `cap` others were open (see capConnections). */
const overCap = new WeakSet<Socket>();

/**
 * The connection cap, answered instead of reset: a connection accepted while `cap` others are open is marked;
 * its inference requests get 429 `too_many_connections` (with `Retry-After`), every answer on it closes it, and
 * health/metadata/metrics are still served on it. (Node's `server.maxConnections` destroys such sockets: the
 * client sees ECONNRESET. test/e2e/server-overload-answers.test.ts shows both.)
 */
export function capConnections(server: Server, cap: number): void {
  let open = 0;
  server.on('connection', (socket: Socket) => {
    if (++open > cap) overCap.add(socket);
    socket.once('close', () => open--);
  });
}

async function hooks(app: FastifyInstance): Promise<void> {
  const ctx = app.padserve;
  app.decorateRequest('track', null);
  app.addSchema(errorSchema);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    reply.header('x-content-type-options', 'nosniff');
    const overConnectionCap = overCap.has(req.raw.socket);
    if (overConnectionCap) reply.header('connection', 'close');
    if (!req.routeOptions.config?.inference) return;
    if (ctx.apiToken && !bearerMatches(req.headers.authorization, ctx.apiToken)) {
      throw new ServeError('unauthorized', 'unauthorized', 'missing or wrong bearer token');
    }
    if (overConnectionCap) {
      // Read the upload to its end first: closing a connection with unread bytes makes the kernel reset it, and
      // the client could lose this answer (the receive timeout still bounds a client that never finishes).
      if (!req.raw.complete) {
        const read = new Promise((done) => req.raw.once('end', done).once('close', done));
        req.raw.resume();
        await read;
      }
      throw new ServeError(
        'rejected_queue_full',
        'too_many_connections',
        'the server has its maximum number of open connections (--max-connections); retry on a new connection',
        { retryAfterS: ctx.limits.retryAfterS },
      );
    }
    if (ctx.lifecycle.draining) {
      throw new ServeError(
        'draining',
        'shutting_down',
        'the server is shutting down; retry on another replica',
        { retryAfterS: ctx.limits.retryAfterS },
      );
    }
    const track = new RequestTrack(
      req.routeOptions.url ?? req.url,
      deadlineFor(req, ctx.limits.requestTimeoutMs),
      priorityFor(req),
    );
    req.track = track;
    ctx.lifecycle.inflight++;
    ctx.metrics.inflight.inc();
    let released = false;
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) {
        // The client went away before the answer was written: drop its queued rows, count it once.
        track.controller.abort();
        finish(ctx, track, 'client_cancelled');
      }
      if (!released) {
        released = true;
        ctx.lifecycle.inflight--;
        ctx.metrics.inflight.dec();
      }
    });
  });

  app.addHook('onSend', async (req, reply, payload) => {
    if (req.track) timingHeaders(reply, req.track);
    // While draining, every answer closes its connection so that keep-alive clients cannot hold the drain.
    if (ctx.lifecycle.draining) reply.header('connection', 'close');
    return payload;
  });

  app.addHook('onResponse', async (req, reply) => {
    const t = req.track;
    if (t) finish(ctx, t, reply.statusCode < 400 ? 'ok' : reasonForStatus(reply.statusCode));
    else if (req.routeOptions.config?.inference && reply.statusCode >= 400) {
      ctx.metrics.observeRequest(
        req.routeOptions.url ?? req.url,
        'none',
        reasonForStatus(reply.statusCode),
        0,
      );
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const { error, bug } = httpServeError(err);
    if (bug) req.log.error({ err }, 'internal error');
    else if (error.status >= 500) req.log.info({ code: error.code }, error.message);
    if (req.track) finish(ctx, req.track, error.reason);
    if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
    return reply.code(error.status).type('application/json').send(errorBody(error));
  });

  app.setNotFoundHandler((req, reply) => {
    const e = new ServeError(
      'not_found',
      'route_not_found',
      `no route ${req.method} ${req.url.split('?')[0]}`,
    );
    return reply.code(404).send(errorBody(e));
  });
}

/**
 * Registered without encapsulation so that the hooks and handlers apply to every route: the `skip-override`
 * marker is what fastify-plugin sets (not a declared dependency of the project, so set here directly).
 */
export const hooksPlugin = Object.assign(hooks, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'padserve-hooks',
});
