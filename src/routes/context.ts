/**
 * The HTTP side of the server context: the fastify decorator (`app.padserve`, the transport-neutral
 * `ServerContext` of src/inference/server-context.ts) and the per-request track (`request.track`), the request
 * headers that set an inference request's deadline and priority, and the timing headers that fall out of it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { timingValues, type RequestTrack, type ServerContext } from '../inference/server-context.js';
import { ServeError } from '../observability/errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    padserve: ServerContext;
  }
  interface FastifyRequest {
    track: RequestTrack | null;
  }
  interface FastifyContextConfig {
    /** Marks an inference route: tracked, timed, counted, refused while draining. */
    inference?: boolean;
  }
}

/** Deadline from the server default, shortened (never lengthened) by a valid `x-deadline-ms` header. */
export function deadlineFor(req: FastifyRequest, defaultMs: number): number {
  const h = req.headers['x-deadline-ms'];
  let ms = defaultMs;
  if (h !== undefined) {
    const v = Number(Array.isArray(h) ? h[0] : h);
    if (!Number.isFinite(v) || v <= 0)
      throw new ServeError(
        'invalid_input',
        'invalid_deadline',
        `x-deadline-ms must be a positive number of milliseconds, got "${String(h)}"`,
      );
    ms = Math.min(ms, v);
  }
  return performance.now() + ms;
}

/** Queue priority from `x-priority` (integer -9..9, lower first, default 0). */
export function priorityFor(req: FastifyRequest): number {
  const h = req.headers['x-priority'];
  if (h === undefined) return 0;
  const v = Number(Array.isArray(h) ? h[0] : h);
  if (!Number.isInteger(v) || v < -9 || v > 9)
    throw new ServeError(
      'invalid_input',
      'invalid_priority',
      `x-priority must be an integer in [-9, 9], got "${String(h)}"`,
    );
  return v;
}

export function trackOf(req: FastifyRequest): RequestTrack {
  if (!req.track) throw new Error(`route ${req.url} is not marked as an inference route`);
  return req.track;
}

/** Sets the TEI-style timing headers of an inference response. */
export function timingHeaders(reply: FastifyReply, track: RequestTrack): void {
  for (const [name, value] of timingValues(track)) reply.header(name, value);
}
