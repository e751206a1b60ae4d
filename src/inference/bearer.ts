/**
 * The bearer-token check both transports use (HTTP `Authorization` header, gRPC `authorization` metadata),
 * compared in constant time over SHA-256 digests, so neither content nor length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  const given = digest(m ? m[1]!.trim() : '');
  return timingSafeEqual(given, digest(token)) && !!m;
}
