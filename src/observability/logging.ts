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

/**
 * The logger the worker pool, the model manager and the gRPC calls take (fastify's pino logger is one): message
 * lines at three levels; `error` also takes pino's fields first (`{ err }` logs a bug's stack).
 */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(fieldsOrMsg: object | string, msg?: string): void;
}

/**
 * A logger whose target comes later: the pools and the model manager need one before the app (and fastify's
 * logger) exists, so it writes to stderr until `use(app.log)`.
 */
export class DeferredLogger implements Logger {
  private target: Logger = {
    info: (m) => console.error(m),
    warn: (m) => console.error(m),
    error: (a, m) => (typeof a === 'string' ? console.error(a) : console.error(m ?? '', a)),
  };

  use(target: Logger): void {
    this.target = target;
  }

  info(msg: string): void {
    this.target.info(msg);
  }

  warn(msg: string): void {
    this.target.warn(msg);
  }

  error(fieldsOrMsg: object | string, msg?: string): void {
    if (msg === undefined) this.target.error(fieldsOrMsg);
    else this.target.error(fieldsOrMsg, msg);
  }
}
