/**
 * Typed errors of image decoding and preprocessing. `code` is machine-readable and stable (it goes into API error
 * bodies); its failure reason and HTTP status come from the one code registry (src/observability/error-codes.ts).
 * Client mistakes are 4xx; a preprocessing spec that cannot work is the server's own misconfiguration (500).
 */
import { ERROR_CODES, codeStatus, type FailureReason } from '../observability/error-codes.js';

export type ImageErrorCode =
  /** No bytes at all. */
  | 'empty_image'
  /** Not one of the accepted raster formats (SVG, PDF, text, unknown bytes, ...). */
  | 'unsupported_image_format'
  /** Width × height above the configured limit (checked from the header, before any pixel is decoded). */
  | 'image_too_large'
  /** A supported format whose data is corrupt or truncated. */
  | 'image_decode_failed'
  /** The model's preprocessing spec is invalid (server configuration, not the client's fault). */
  | 'invalid_preprocess_spec';

export class ImageError extends Error {
  override name = 'ImageError';
  readonly code: ImageErrorCode;
  /** The failure reason (from the registry). */
  readonly reason: FailureReason;
  /** HTTP status to answer with (from the registry). */
  readonly status: number;
  /** Extra machine-readable facts (format, width, height, limit). */
  readonly details: Readonly<Record<string, string | number>>;

  constructor(
    code: ImageErrorCode,
    message: string,
    details: Record<string, string | number> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.reason = ERROR_CODES[code].reason;
    this.status = codeStatus(code);
    this.details = details;
  }
}

export function isImageError(e: unknown): e is ImageError {
  return e instanceof ImageError;
}
