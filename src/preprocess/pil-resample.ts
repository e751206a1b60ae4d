/**
 * A pure-TypeScript, bit-exact re-implementation of Pillow's `Image.resize` for 8-bit images (any number of
 * interleaved channels, 1 to 4), with the NEAREST, BOX, BILINEAR and BICUBIC filters.
 *
 * What it reproduces (Pillow ≥ 7, `src/libImaging/Resample.c` and `_imaging.c: _resize`):
 * - `precompute_coeffs`: a filter support widened by the downscale factor (antialiasing), per output pixel the
 *   source range `[xmin, xmin + xmax)` from `(int)(center ± support + 0.5)`, weights normalised to sum 1 (in
 *   double precision, the source box given as float32 like Pillow's `float box[4]`);
 * - `normalize_coeffs_8bpc`: weights to fixed point with `PRECISION_BITS = 32 - 8 - 2 = 22`, rounded half away
 *   from zero and truncated like a C `(int)` cast;
 * - `ImagingResampleHorizontal_8bpc` / `ImagingResampleVertical_8bpc`: integer accumulation starting from
 *   `1 << (PRECISION_BITS - 1)`, then `clip8(ss) = clamp(ss >> PRECISION_BITS, 0, 255)`;
 * - `ImagingResampleInner`: the horizontal pass first (only over the source rows the vertical pass reads, from
 *   the first to the last row its bounds touch), then the vertical pass; each pass skipped when it is not needed
 *   (`need_horizontal = xsize != in.xsize || box[0] || box[2] != xsize`, likewise vertically);
 * - `_resize`: an integer box of the output's size is a plain crop; NEAREST goes through
 *   `ImagingScaleAffine` (`xin = (int)(box0 + a0 * 0.5 + x * a0)`, accumulated in double like Pillow), not
 *   through the resampler; `Image.resize` returns a copy when the size and box are the identity.
 *
 * Every output pixel depends only on its own coefficients, so an output `window` (resize then crop) computes
 * exactly the pixels Pillow computes, without the ones the crop throws away.
 *
 * BICUBIC uses a = −0.5 (Pillow's constant). HAMMING and LANCZOS are left out on purpose: they call sin/cos, whose
 * last-bit results depend on the C library, so they could not be promised bit-exact here.
 */

/** 8-bit pixels, channels interleaved, rows top to bottom, no padding between rows. */
export interface PixelImage {
  readonly width: number;
  readonly height: number;
  /**
   * 1 (L), 2, 3 (RGB) or 4 (RGBX, CMYK, premultiplied RGBa). Every channel is filtered independently, as Pillow
   * does for 8bpc data. Note that Pillow's `Image.resize` premultiplies RGBA / LA images first (converting to
   * RGBa / La and back); this function does not, so drop or premultiply alpha before calling it.
   */
  readonly channels: number;
  readonly data: Uint8Array;
}

export type PilFilter = 'nearest' | 'box' | 'bilinear' | 'bicubic';

/** Source region in source pixel coordinates (Pillow's `box=(x0, y0, x1, y1)`, stored as float32 like Pillow). */
export interface ResampleBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The part of the (full) resized image to produce: `resize(...).crop((left, top, left + width, top + height))`. */
export interface OutputWindow {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface PilResizeOptions {
  box?: ResampleBox;
  window?: OutputWindow;
}

export const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

interface FilterDef {
  readonly support: number;
  readonly fn: (x: number) => number;
}

const FILTERS: Record<Exclude<PilFilter, 'nearest'>, FilterDef> = {
  box: {
    support: 0.5,
    fn: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0),
  },
  bilinear: {
    support: 1.0,
    fn: (x) => {
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    },
  },
  bicubic: {
    support: 2.0,
    fn: (x) => {
      const a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
};

/** Fixed-point coefficients for output positions `[from, to)` of one axis. */
export interface Coefficients {
  /** Taps per output position (Pillow's `ksize`). */
  readonly ksize: number;
  /** First output position these coefficients are for. */
  readonly from: number;
  /** Per output position (relative to `from`): `[xmin, count]`. */
  readonly bounds: Int32Array;
  /** `ksize` fixed-point weights per output position (relative to `from`); entries past `count` are 0. */
  readonly weights: Int32Array;
}

/** C `(int)` cast of a double. */
const cInt = Math.trunc;

function computeCoefficients(
  filter: Exclude<PilFilter, 'nearest'>,
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
  from: number,
  to: number,
): Coefficients {
  const f = FILTERS[filter];
  // (double)(in1 - in0) / outSize, the subtraction in float as in C
  const scale = Math.fround(in1 - in0) / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = f.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const n = to - from;
  const bounds = new Int32Array(n * 2);
  const weights = new Int32Array(n * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = from; xx < to; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = cInt(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = cInt(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = f.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    const base = (xx - from) * ksize;
    for (let x = 0; x < xmax; x++) {
      let w = k[x]!;
      if (ww !== 0.0) w /= ww;
      // normalize_coeffs_8bpc
      weights[base + x] = w < 0 ? cInt(-0.5 + w * ONE) : cInt(0.5 + w * ONE);
    }
    bounds[(xx - from) * 2] = xmin;
    bounds[(xx - from) * 2 + 1] = xmax < 0 ? 0 : xmax;
  }
  return { ksize, from, bounds, weights };
}

const COEFF_CACHE_LIMIT = 256;
const coeffCache = new Map<string, Coefficients>();

/**
 * Pillow's coefficients for one axis (cached per filter, sizes, box and window: a server sees few distinct
 * (in, out) pairs, so they are computed once).
 */
export function coefficients(
  filter: Exclude<PilFilter, 'nearest'>,
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
  from = 0,
  to = outSize,
): Coefficients {
  const key = `${filter}|${inSize}|${in0}|${in1}|${outSize}|${from}|${to}`;
  const hit = coeffCache.get(key);
  if (hit) {
    // refresh recency
    coeffCache.delete(key);
    coeffCache.set(key, hit);
    return hit;
  }
  const c = computeCoefficients(filter, inSize, in0, in1, outSize, from, to);
  coeffCache.set(key, c);
  if (coeffCache.size > COEFF_CACHE_LIMIT) {
    const oldest = coeffCache.keys().next().value;
    if (oldest !== undefined) coeffCache.delete(oldest);
  }
  return c;
}

/*
 * Both passes write into a Uint8ClampedArray: storing the integer `ss >> PRECISION_BITS` there clamps it to
 * 0..255, which is exactly Pillow's clip8 table. Sums use int32 arithmetic (Math.imul, | 0) like the C code; they
 * stay within int32 for every filter here (that is what the two spare bits of PRECISION_BITS are for).
 */

/**
 * Horizontal pass: output columns `[c.from, c.from + outW)` for source rows `[row0, row0 + rows)`.
 * Output is `outW` wide, `rows` high.
 */
function resampleHorizontal(
  src: PixelImage,
  c: Coefficients,
  outW: number,
  row0: number,
  rows: number,
): Uint8Array {
  const ch = src.channels;
  const s = src.data;
  const out = new Uint8ClampedArray(outW * rows * ch);
  const { ksize, bounds, weights } = c;
  const inStride = src.width * ch;
  let o = 0;
  if (ch === 3) {
    for (let r = 0; r < rows; r++) {
      const rowBase = (r + row0) * inStride;
      for (let xx = 0; xx < outW; xx++) {
        const kb = xx * ksize;
        const end = kb + bounds[xx * 2 + 1]!;
        let p = rowBase + bounds[xx * 2]! * 3;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let j = kb; j < end; j++, p += 3) {
          const k = weights[j]!;
          s0 = (s0 + Math.imul(s[p]!, k)) | 0;
          s1 = (s1 + Math.imul(s[p + 1]!, k)) | 0;
          s2 = (s2 + Math.imul(s[p + 2]!, k)) | 0;
        }
        out[o] = s0 >> PRECISION_BITS;
        out[o + 1] = s1 >> PRECISION_BITS;
        out[o + 2] = s2 >> PRECISION_BITS;
        o += 3;
      }
    }
  } else {
    for (let r = 0; r < rows; r++) {
      const rowBase = (r + row0) * inStride;
      for (let xx = 0; xx < outW; xx++) {
        const kb = xx * ksize;
        const end = kb + bounds[xx * 2 + 1]!;
        for (let b = 0; b < ch; b++) {
          let acc = HALF;
          let p = rowBase + bounds[xx * 2]! * ch + b;
          for (let j = kb; j < end; j++, p += ch) acc = (acc + Math.imul(s[p]!, weights[j]!)) | 0;
          out[o++] = acc >> PRECISION_BITS;
        }
      }
    }
  }
  return new Uint8Array(out.buffer);
}

/**
 * Vertical pass over `s` (width `w`, `ch` channels), producing the output rows `[c.from, c.from + outH)`; source
 * row indices are `bounds.ymin - rowShift`, and only columns `[col0, col0 + outW)` of the source are used.
 */
function resampleVertical(
  s: Uint8Array,
  w: number,
  ch: number,
  c: Coefficients,
  outH: number,
  rowShift: number,
  col0: number,
  outW: number,
): Uint8Array {
  const out = new Uint8ClampedArray(outW * outH * ch);
  const { ksize, bounds, weights } = c;
  const inStride = w * ch;
  const rowLen = outW * ch;
  const colOff = col0 * ch;
  let o = 0;
  for (let yy = 0; yy < outH; yy++) {
    const kb = yy * ksize;
    const end = kb + bounds[yy * 2 + 1]!;
    const first = (bounds[yy * 2]! - rowShift) * inStride + colOff;
    for (let i = 0; i < rowLen; i++) {
      let acc = HALF;
      let p = first + i;
      for (let j = kb; j < end; j++, p += inStride) acc = (acc + Math.imul(s[p]!, weights[j]!)) | 0;
      out[o++] = acc >> PRECISION_BITS;
    }
  }
  return new Uint8Array(out.buffer);
}

function cropRaw(src: PixelImage, left: number, top: number, w: number, h: number): Uint8Array {
  const ch = src.channels;
  const out = new Uint8Array(w * h * ch);
  const inStride = src.width * ch;
  for (let y = 0; y < h; y++) {
    const start = (y + top) * inStride + left * ch;
    out.set(src.data.subarray(start, start + w * ch), y * w * ch);
  }
  return out;
}

/** `_resize`'s NEAREST path: `ImagingScaleAffine` with fill (outside the source: 0). */
function resizeNearest(
  src: PixelImage,
  outW: number,
  outH: number,
  box: ResampleBox,
  win: OutputWindow,
): Uint8Array {
  const ch = src.channels;
  const a0 = Math.fround(box.x1 - box.x0) / outW;
  const a4 = Math.fround(box.y1 - box.y0) / outH;
  const coord = (v: number): number => (v < 0.0 ? -1 : cInt(v));
  const xintab = new Int32Array(win.width).fill(-1);
  let xo = box.x0 + a0 * 0.5;
  for (let x = 0; x < win.left + win.width; x++) {
    const xin = coord(xo);
    if (x >= win.left && xin >= 0 && xin < src.width) xintab[x - win.left] = xin;
    xo += a0;
  }
  const out = new Uint8Array(win.width * win.height * ch);
  const inStride = src.width * ch;
  let yo = box.y0 + a4 * 0.5;
  for (let y = 0; y < win.top + win.height; y++) {
    const yi = coord(yo);
    yo += a4;
    if (y < win.top || yi < 0 || yi >= src.height) continue;
    const rowIn = yi * inStride;
    let o = (y - win.top) * win.width * ch;
    for (let x = 0; x < win.width; x++) {
      const xin = xintab[x]!;
      if (xin >= 0) {
        const p = rowIn + xin * ch;
        for (let b = 0; b < ch; b++) out[o + b] = src.data[p + b]!;
      }
      o += ch;
    }
  }
  return out;
}

function checkInt(v: number, what: string, min: number): void {
  if (!Number.isInteger(v) || v < min)
    throw new RangeError(`pilResize: ${what} must be an integer ≥ ${min}, got ${v}`);
}

/**
 * `Image.resize((outW, outH), filter, box)` of Pillow for an 8-bit image, optionally cropped to `window` (only the
 * window's pixels are computed). Returns a new image (never a view of `src`).
 */
export function pilResize(
  src: PixelImage,
  outW: number,
  outH: number,
  filter: PilFilter,
  options: PilResizeOptions = {},
): PixelImage {
  const ch = src.channels;
  checkInt(src.width, 'source width', 1);
  checkInt(src.height, 'source height', 1);
  checkInt(ch, 'channels', 1);
  if (ch > 4) throw new RangeError(`pilResize: at most 4 channels, got ${ch}`);
  if (src.data.length !== src.width * src.height * ch) {
    throw new RangeError(`pilResize: ${src.data.length} bytes for ${src.width}x${src.height}x${ch}`);
  }
  checkInt(outW, 'output width', 1);
  checkInt(outH, 'output height', 1);
  const box: ResampleBox = options.box
    ? {
        x0: Math.fround(options.box.x0),
        y0: Math.fround(options.box.y0),
        x1: Math.fround(options.box.x1),
        y1: Math.fround(options.box.y1),
      }
    : { x0: 0, y0: 0, x1: src.width, y1: src.height };
  if (box.x0 < 0 || box.y0 < 0) throw new RangeError("pilResize: box offset can't be negative");
  if (box.x1 > src.width || box.y1 > src.height)
    throw new RangeError("pilResize: box can't exceed original image size");
  if (box.x1 - box.x0 < 0 || box.y1 - box.y0 < 0) throw new RangeError("pilResize: box can't be empty");
  const win = options.window ?? { left: 0, top: 0, width: outW, height: outH };
  checkInt(win.left, 'window left', 0);
  checkInt(win.top, 'window top', 0);
  checkInt(win.width, 'window width', 1);
  checkInt(win.height, 'window height', 1);
  if (win.left + win.width > outW || win.top + win.height > outH) {
    throw new RangeError(`pilResize: window exceeds the ${outW}x${outH} output`);
  }
  const result = (data: Uint8Array): PixelImage => ({
    width: win.width,
    height: win.height,
    channels: ch,
    data,
  });

  // Image.resize: identity size and box -> copy; _resize: integer box of the output's size -> crop.
  const intBox = Number.isInteger(box.x0) && Number.isInteger(box.y0);
  if (intBox && Math.fround(box.x1 - box.x0) === outW && Math.fround(box.y1 - box.y0) === outH) {
    return result(cropRaw(src, box.x0 + win.left, box.y0 + win.top, win.width, win.height));
  }
  if (filter === 'nearest') return result(resizeNearest(src, outW, outH, box, win));

  const needH = outW !== src.width || box.x0 !== 0 || box.x1 !== outW;
  const needV = outH !== src.height || box.y0 !== 0 || box.y1 !== outH;

  const vert = needV
    ? coefficients(filter, src.height, box.y0, box.y1, outH, win.top, win.top + win.height)
    : null;
  // Source rows the vertical pass reads (all of the window's rows when there is no vertical pass).
  let row0 = win.top;
  let row1 = win.top + win.height;
  if (vert) {
    const last = (win.height - 1) * 2;
    row0 = vert.bounds[0]!;
    row1 = vert.bounds[last]! + vert.bounds[last + 1]!;
  }
  let stage: Uint8Array;
  let stageW: number;
  let stageCol0: number;
  if (needH) {
    const horiz = coefficients(filter, src.width, box.x0, box.x1, outW, win.left, win.left + win.width);
    stage = resampleHorizontal(src, horiz, win.width, row0, row1 - row0);
    stageW = win.width;
    stageCol0 = 0;
  } else {
    // no horizontal pass: the vertical pass reads the source itself (Pillow's bounds are left unshifted)
    stage = src.data;
    stageW = src.width;
    stageCol0 = win.left;
    row0 = 0;
  }
  if (!vert) {
    // rows [win.top, win.top + height) of the stage (which holds exactly those rows when it was computed)
    if (!needH) return result(cropRaw(src, win.left, win.top, win.width, win.height));
    return result(stage);
  }
  return result(resampleVertical(stage, stageW, ch, vert, win.height, row0, stageCol0, win.width));
}
