/**
 * Image decoding (sharp / libvips) and model preprocessing (Pillow-exact resize, crop, normalise).
 *
 * Decoding turns untrusted bytes into 8-bit RGB: only raster formats on an allow-list are accepted (checked from
 * the magic bytes before libvips sees the data, and again from libvips' own answer), so SVG/PDF/text loaders, and
 * with them any external reference, are never reached. The pixel count is checked from the header before any pixel
 * is decoded. EXIF orientation is applied, the first frame of an animation is used, 16-bit becomes 8-bit (high
 * byte, as Pillow reads 16-bit RGB), CMYK is converted to sRGB with its ICC profile (or libvips' built-in CMYK
 * profile), gray is replicated to 3 channels and alpha is dropped (not composited, not premultiplied).
 *
 * Embedded ICC profiles of RGB and gray images are ignored, as Pillow (and therefore torchvision's training and
 * evaluation pipelines) ignores them: the model sees the stored values it was trained on.
 *
 * Preprocessing follows the model card's `ImagePreprocessSpec`; with the 'pil-*' and 'nearest' kernels it
 * reproduces torchvision's `Resize(shorter) → CenterCrop(size) → ToTensor → Normalize` on PIL images bit for bit.
 */
import sharp, { type Metadata, type OutputInfo, type SharpOptions } from 'sharp';
import type { ImagePreprocessSpec } from '../model/card.js';
import { checked, type FloatTensor } from '../tensor.js';
import { ImageError } from './image-errors.js';
import { pilResize, type OutputWindow, type PilFilter, type PixelImage } from './pil-resample.js';

export { ImageError, isImageError, type ImageErrorCode } from './image-errors.js';

/** Formats accepted, as sharp's `metadata().format` names them (AVIF and HEIC are both 'heif'). */
export const ALLOWED_IMAGE_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'heif', 'tiff'] as const;
export type ImageFormat = (typeof ALLOWED_IMAGE_FORMATS)[number];

export interface DecodeLimits {
  /** Largest width × height accepted (of the first frame), checked from the header before decoding. */
  maxInputPixels: number;
  /** Abort decoding after this many seconds (libvips' own timeout); none by default. */
  timeoutSeconds?: number;
}

/** A decoded image: 8-bit RGB, interleaved, rows top to bottom, already in display orientation. */
export interface DecodedImage extends PixelImage {
  readonly channels: 3;
  /** Source format as detected. */
  readonly format: ImageFormat;
  /** Whether the source had an alpha channel (it was dropped). */
  readonly hadAlpha: boolean;
  /** EXIF orientation of the source (1 to 8) if it had one; the pixels are already oriented. */
  readonly orientation: number | null;
}

/** Format from the first bytes, or null if none of the accepted formats matches. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const b = (i: number): number => bytes[i] ?? -1;
  const ascii = (from: number, s: string): boolean => {
    for (let i = 0; i < s.length; i++) if (b(from + i) !== s.charCodeAt(i)) return false;
    return true;
  };
  if (b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return 'jpeg';
  if (b(0) === 0x89 && ascii(1, 'PNG\r\n\x1a\n')) return 'png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  // classic and BigTIFF, both byte orders
  if (
    (ascii(0, 'II') && (b(2) === 42 || b(2) === 43) && b(3) === 0) ||
    (ascii(0, 'MM') && b(2) === 0 && (b(3) === 42 || b(3) === 43))
  ) {
    return 'tiff';
  }
  // ISO-BMFF with an image brand (AVIF / HEIF)
  if (ascii(4, 'ftyp')) {
    const brand = String.fromCharCode(b(8), b(9), b(10), b(11));
    if (
      ['avif', 'avis', 'heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1', 'mif2'].includes(brand)
    )
      return 'heif';
  }
  return null;
}

function isAllowed(format: string): format is ImageFormat {
  return (ALLOWED_IMAGE_FORMATS as readonly string[]).includes(format);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * sharp's errors become typed errors. libvips' own text stays in `cause` (for logs) and out of the message, which
 * goes to clients.
 */
function mapSharpError(e: unknown, format: string): ImageError {
  if (e instanceof ImageError) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (/exceeds pixel limit/i.test(message)) {
    return new ImageError(
      'image_too_large',
      'image too large: above the pixel limit',
      { format },
      { cause: e },
    );
  }
  if (/unsupported image format/i.test(message)) {
    return new ImageError('unsupported_image_format', 'unsupported image format', { format }, { cause: e });
  }
  if (/timeout/i.test(message)) {
    return new ImageError(
      'image_decode_failed',
      `could not decode ${format} image: timed out`,
      { format },
      { cause: e },
    );
  }
  return new ImageError(
    'image_decode_failed',
    `could not decode ${format} image: corrupt or truncated data`,
    { format },
    {
      cause: e,
    },
  );
}

/**
 * Decodes untrusted image bytes to 8-bit RGB. Throws `ImageError` with code `empty_image`,
 * `unsupported_image_format`, `image_too_large` or `image_decode_failed`.
 */
export async function decodeImage(bytes: Uint8Array, limits: DecodeLimits): Promise<DecodedImage> {
  if (!Number.isFinite(limits.maxInputPixels) || limits.maxInputPixels < 1) {
    throw new RangeError(`decodeImage: maxInputPixels must be ≥ 1, got ${limits.maxInputPixels}`);
  }
  if (bytes.byteLength === 0) throw new ImageError('empty_image', 'empty image: no bytes received');
  const sniffed = sniffImageFormat(bytes);
  if (sniffed === null) {
    throw new ImageError(
      'unsupported_image_format',
      `unsupported image format: expected one of ${ALLOWED_IMAGE_FORMATS.join(', ')}`,
    );
  }
  const input = asBuffer(bytes);
  const base: SharpOptions = {
    failOn: 'error',
    limitInputPixels: Math.floor(limits.maxInputPixels),
    pages: 1,
    page: 0,
  };

  let meta: Metadata;
  try {
    // header only; the pixel limit is checked below, with the dimensions in the error
    meta = await sharp(input, { ...base, limitInputPixels: false }).metadata();
  } catch (e) {
    throw mapSharpError(e, sniffed);
  }
  const format = meta.format;
  if (!isAllowed(format)) {
    throw new ImageError('unsupported_image_format', `unsupported image format: ${format}`, { format });
  }
  const width = meta.width;
  const height = meta.pageHeight ?? meta.height;
  if (!(width > 0) || !(height > 0)) {
    throw new ImageError(
      'image_decode_failed',
      `could not decode ${format} image: no dimensions in the header`,
      { format },
    );
  }
  if (width * height > limits.maxInputPixels) {
    throw new ImageError(
      'image_too_large',
      `image too large: ${width}x${height} = ${width * height} pixels, at most ${limits.maxInputPixels} accepted`,
      { format, width, height, limit: limits.maxInputPixels },
    );
  }

  let data: Buffer;
  let info: OutputInfo;
  try {
    let pipeline = sharp(input, { ...base, ignoreIcc: meta.space !== 'cmyk' }).autoOrient();
    if (limits.timeoutSeconds !== undefined) pipeline = pipeline.timeout({ seconds: limits.timeoutSeconds });
    ({ data, info } = await pipeline
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true }));
  } catch (e) {
    throw mapSharpError(e, format);
  }
  const n = info.width * info.height;
  const ch = info.channels;
  if (n === 0 || data.length !== n * ch || ch < 1 || ch > 4) {
    throw new ImageError(
      'image_decode_failed',
      `could not decode ${format} image: unexpected ${ch}-channel output`,
      {
        format,
      },
    );
  }
  const common = {
    width: info.width,
    height: info.height,
    channels: 3 as const,
    format,
    hadAlpha: meta.hasAlpha === true || ch === 2 || ch === 4,
    orientation: meta.orientation ?? null,
  };
  if (ch === 3) return { ...common, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  return { ...common, data: toRgb(data, n, ch) };
}

/** Gray → replicated, gray+alpha / RGBA → alpha dropped. */
function toRgb(src: Uint8Array, n: number, ch: number): Uint8Array {
  const out = new Uint8Array(n * 3);
  if (ch === 1 || ch === 2) {
    for (let i = 0, p = 0, o = 0; i < n; i++, p += ch, o += 3) {
      const v = src[p]!;
      out[o] = v;
      out[o + 1] = v;
      out[o + 2] = v;
    }
  } else {
    for (let i = 0, p = 0, o = 0; i < n; i++, p += ch, o += 3) {
      out[o] = src[p]!;
      out[o + 1] = src[p + 1]!;
      out[o + 2] = src[p + 2]!;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Preprocessing

/** Python's round() on a float: half to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision `Resize(shorter)`: the shorter side becomes `shorter`, the longer one `floor(shorter·long/short)`. */
export function shorterSideSize(
  width: number,
  height: number,
  shorter: number,
): { width: number; height: number } {
  if (width <= height) return { width: shorter, height: Math.floor((shorter * height) / width) };
  return { width: Math.floor((shorter * width) / height), height: shorter };
}

/**
 * torchvision `CenterCrop(size)` offset along one axis: round-half-even((len − size) / 2); when the image is
 * smaller than the crop it is zero-padded by floor((size − len) / 2) first (a negative offset).
 */
export function centerCropOffset(length: number, size: number): number {
  if (length < size) return -Math.floor((size - length) / 2);
  return roundHalfEven((length - size) / 2);
}

/** Output window of the resized image (before clamping) and its size. */
interface Plan {
  resizedW: number;
  resizedH: number;
  left: number;
  top: number;
}

function validateSpec(spec: ImagePreprocessSpec): void {
  const bad = (why: string): never => {
    throw new ImageError('invalid_preprocess_spec', `invalid preprocessing spec: ${why}`);
  };
  if (!Number.isInteger(spec.size) || spec.size < 1) bad(`size ${spec.size}`);
  if (spec.channels !== 'rgb') bad(`channels ${String(spec.channels)}`);
  if (spec.resize === 'shorter-side-then-center-crop') {
    if (spec.resizeShorter === undefined || !Number.isInteger(spec.resizeShorter) || spec.resizeShorter < 1) {
      bad(`resizeShorter ${spec.resizeShorter}`);
    }
  } else if (spec.resize !== 'direct') {
    bad(`resize ${String(spec.resize)}`);
  }
  if (!['pil-bilinear', 'pil-bicubic', 'nearest', 'sharp-linear'].includes(spec.kernel))
    bad(`kernel ${spec.kernel}`);
  if (spec.mean.length !== 3 || spec.std.length !== 3) bad('mean and std need 3 values');
  if (spec.std.some((s) => !Number.isFinite(s) || s === 0)) bad('std must be finite and non-zero');
  if (spec.mean.some((m) => !Number.isFinite(m))) bad('mean must be finite');
  if (!Number.isFinite(spec.scale) || spec.scale <= 0) bad(`scale ${spec.scale}`);
}

function plan(width: number, height: number, spec: ImagePreprocessSpec): Plan {
  if (spec.resize === 'direct') return { resizedW: spec.size, resizedH: spec.size, left: 0, top: 0 };
  const r = shorterSideSize(width, height, spec.resizeShorter!);
  return {
    resizedW: r.width,
    resizedH: r.height,
    left: centerCropOffset(r.width, spec.size),
    top: centerCropOffset(r.height, spec.size),
  };
}

/** The part of the resized image that lands in the crop, and where it goes in the size×size canvas. */
function clampWindow(p: Plan, size: number): { win: OutputWindow; dx: number; dy: number } {
  const x0 = Math.max(0, p.left);
  const y0 = Math.max(0, p.top);
  const x1 = Math.min(p.resizedW, p.left + size);
  const y1 = Math.min(p.resizedH, p.top + size);
  return { win: { left: x0, top: y0, width: x1 - x0, height: y1 - y0 }, dx: x0 - p.left, dy: y0 - p.top };
}

const NORM_CACHE = new Map<string, Float32Array[]>();

/**
 * Per channel, the normalised float32 value of every pixel level: `(float32(p) · scale − mean) / std` with each
 * step rounded to float32, as numpy/torch do it in float32. A scale of 1/k (k an integer, e.g. 1/255) divides
 * by k, as `ToTensor` does, rather than multiplying by the rounded reciprocal (which differs in the last bit).
 */
export function normalisationTables(
  spec: Pick<ImagePreprocessSpec, 'mean' | 'std' | 'scale'>,
): Float32Array[] {
  const key = `${spec.scale}|${spec.mean.join(',')}|${spec.std.join(',')}`;
  const hit = NORM_CACHE.get(key);
  if (hit) return hit;
  const f = Math.fround;
  const inv = 1 / spec.scale;
  const divisor = Math.round(inv);
  const divide = Math.abs(inv - divisor) <= 1e-9 * inv;
  const scale = f(spec.scale);
  const tables = [0, 1, 2].map((c) => {
    const mean = f(spec.mean[c]!);
    const std = f(spec.std[c]!);
    const t = new Float32Array(256);
    for (let p = 0; p < 256; p++) {
      const x = divide ? f(p / divisor) : f(p * scale);
      t[p] = f(f(x - mean) / std);
    }
    return t;
  });
  if (NORM_CACHE.size > 64) NORM_CACHE.clear();
  NORM_CACHE.set(key, tables);
  return tables;
}

/** Writes the crop (RGB interleaved, `win` sized, placed at dx, dy; zero elsewhere) as normalised CHW. */
function normalise(
  rgb: Uint8Array,
  winW: number,
  winH: number,
  dx: number,
  dy: number,
  size: number,
  spec: ImagePreprocessSpec,
): Float32Array {
  const [t0, t1, t2] = normalisationTables(spec) as [Float32Array, Float32Array, Float32Array];
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  if (winW !== size || winH !== size) {
    // zero padding (torchvision pads with 0 before normalising)
    out.fill(t0[0]!, 0, plane);
    out.fill(t1[0]!, plane, 2 * plane);
    out.fill(t2[0]!, 2 * plane, 3 * plane);
  }
  for (let y = 0; y < winH; y++) {
    let p = y * winW * 3;
    let o = (y + dy) * size + dx;
    for (let x = 0; x < winW; x++, p += 3, o++) {
      out[o] = t0[rgb[p]!]!;
      out[o + plane] = t1[rgb[p + 1]!]!;
      out[o + 2 * plane] = t2[rgb[p + 2]!]!;
    }
  }
  return out;
}

const PIL_FILTER: Record<'pil-bilinear' | 'pil-bicubic' | 'nearest', PilFilter> = {
  'pil-bilinear': 'bilinear',
  'pil-bicubic': 'bicubic',
  nearest: 'nearest',
};

function checkDecoded(img: PixelImage): void {
  if (
    img.channels !== 3 ||
    img.width < 1 ||
    img.height < 1 ||
    img.data.length !== img.width * img.height * 3
  ) {
    throw new RangeError(
      `preprocessImage: expected 8-bit RGB, got ${img.width}x${img.height}x${img.channels}`,
    );
  }
}

/**
 * The model input for one decoded image: float32 CHW [3, size, size]. Synchronous, for the exact kernels
 * ('pil-bilinear', 'pil-bicubic', 'nearest'); a 'sharp-linear' spec needs `preprocessImageAsync`.
 */
export function preprocessImage(decoded: PixelImage, spec: ImagePreprocessSpec): Float32Array {
  validateSpec(spec);
  checkDecoded(decoded);
  if (spec.kernel === 'sharp-linear') {
    throw new ImageError(
      'invalid_preprocess_spec',
      "invalid preprocessing spec: kernel 'sharp-linear' runs in libvips, use preprocessImageAsync",
    );
  }
  const p = plan(decoded.width, decoded.height, spec);
  const { win, dx, dy } = clampWindow(p, spec.size);
  const src: PixelImage = { width: decoded.width, height: decoded.height, channels: 3, data: decoded.data };
  const resized = pilResize(src, p.resizedW, p.resizedH, PIL_FILTER[spec.kernel], { window: win });
  return normalise(resized.data, win.width, win.height, dx, dy, spec.size, spec);
}

/** As `preprocessImage`, for every kernel ('sharp-linear' resizes with libvips' linear kernel). */
export async function preprocessImageAsync(
  decoded: PixelImage,
  spec: ImagePreprocessSpec,
): Promise<Float32Array> {
  if (spec.kernel !== 'sharp-linear') return preprocessImage(decoded, spec);
  validateSpec(spec);
  checkDecoded(decoded);
  const p = plan(decoded.width, decoded.height, spec);
  const { win, dx, dy } = clampWindow(p, spec.size);
  let data: Uint8Array = decoded.data;
  if (p.resizedW !== decoded.width || p.resizedH !== decoded.height) {
    const out = await sharp(asBuffer(decoded.data), {
      raw: { width: decoded.width, height: decoded.height, channels: 3 },
    })
      .resize(p.resizedW, p.resizedH, { kernel: 'linear', fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (out.info.width !== p.resizedW || out.info.height !== p.resizedH || out.info.channels !== 3) {
      throw new Error(`sharp resize returned ${out.info.width}x${out.info.height}x${out.info.channels}`);
    }
    data = out.data;
  }
  const crop = cropRgb(data, p.resizedW, win);
  return normalise(crop, win.width, win.height, dx, dy, spec.size, spec);
}

function cropRgb(data: Uint8Array, width: number, win: OutputWindow): Uint8Array {
  if (win.left === 0 && win.top === 0 && win.width === width && data.length === width * win.height * 3)
    return data;
  const out = new Uint8Array(win.width * win.height * 3);
  for (let y = 0; y < win.height; y++) {
    const s = ((y + win.top) * width + win.left) * 3;
    out.set(data.subarray(s, s + win.width * 3), y * win.width * 3);
  }
  return out;
}

/** Decode and preprocess: float32 NCHW [1, 3, size, size]. */
export async function imageToTensor(
  bytes: Uint8Array,
  spec: ImagePreprocessSpec,
  limits: DecodeLimits,
): Promise<FloatTensor> {
  validateSpec(spec);
  const decoded = await decodeImage(bytes, limits);
  const chw = await preprocessImageAsync(decoded, spec);
  return checked({ dtype: 'float32', shape: [1, 3, spec.size, spec.size], data: chw });
}

/**
 * Stacks preprocessed images (CHW float32 [3, size, size] each, or [1, 3, size, size] tensors) into one float32
 * NCHW tensor [N, 3, size, size]. Knows nothing about the graph's input name.
 */
export function stackImages(images: readonly (Float32Array | FloatTensor)[], size: number): FloatTensor {
  const plane = 3 * size * size;
  const data = new Float32Array(images.length * plane);
  images.forEach((img, i) => {
    const arr = img instanceof Float32Array ? img : img.data;
    if (arr.length !== plane) {
      throw new RangeError(
        `stackImages: image ${i} has ${arr.length} values, expected 3x${size}x${size} = ${plane}`,
      );
    }
    data.set(arr, i * plane);
  });
  return checked({ dtype: 'float32', shape: [images.length, 3, size, size], data });
}
