/**
 * Structured logging: fastify's pino logger (JSON lines), with the request id on every request line. A client's
 * `x-request-id` is kept when it is a sane token (≤ 128 chars of [A-Za-z0-9._:-]), else a UUID is generated; the
 * id is echoed in the `x-request-id` response header.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  const given = Array.isArray(h) ? h[0] : h;
  return given && ID_RE.test(given) ? given : randomUUID();
}

export function loggerOptions(level: string): { level: string; redact: string[] } | false {
  if (level === 'silent') return false;
  return { level, redact: ['req.headers.authorization'] };
}

/** The subset of a logger the worker pool and model manager use, over pino's API. */
export function plainLogger(log: { info(m: string): void; warn(m: string): void; error(m: string): void }) {
  return {
    info: (m: string) => log.info(m),
    warn: (m: string) => log.warn(m),
    error: (m: string) => log.error(m),
  };
}
