/** Load tests only ever target this machine: a URL must name a loopback host. */

export class LoadtestError extends Error {
  override name = 'LoadtestError';
  readonly userFacing = true;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  if (LOOPBACK_NAMES.has(h) || h.endsWith('.localhost')) return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)) return h.split('.').every((p) => Number(p) <= 255);
  return /^\[?::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}\]?$/.test(h);
}

/** Parses and checks a server URL: http(s), loopback host, no credentials. Returns the origin. */
export function loopbackUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new LoadtestError(`not a URL: "${raw}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new LoadtestError(`only http(s) URLs, got ${u.protocol}`);
  if (u.username || u.password) throw new LoadtestError('URLs with credentials are refused');
  if (!isLoopbackHost(u.hostname)) {
    throw new LoadtestError(
      `refusing to load-test ${u.hostname}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed`,
    );
  }
  return u.origin;
}
