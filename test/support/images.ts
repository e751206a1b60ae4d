/**
 * Test images: a minimal PNG writer (any bit depth / colour type, and headers that lie about the size) and sharp
 * helpers for JPEG (EXIF orientation, CMYK), animated GIF and deterministic patterns.
 */
import { deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(head.subarray(4), data), 0);
  return Buffer.concat([head, data, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** PNG colour types: 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA. */
export type PngColorType = 0 | 2 | 4 | 6;
const SAMPLES: Record<PngColorType, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

function ihdr(width: number, height: number, bitDepth: 8 | 16, colorType: PngColorType): Buffer {
  const d = Buffer.alloc(13);
  d.writeUInt32BE(width, 0);
  d.writeUInt32BE(height, 4);
  d[8] = bitDepth;
  d[9] = colorType;
  d[10] = 0; // deflate
  d[11] = 0; // adaptive filtering
  d[12] = 0; // no interlace
  return chunk('IHDR', d);
}

/**
 * Encodes a PNG. `samples` holds width × height × channels values (0..255 for 8-bit, 0..65535 for 16-bit),
 * channels interleaved.
 */
export function encodePng(opts: {
  width: number;
  height: number;
  bitDepth: 8 | 16;
  colorType: PngColorType;
  samples: ArrayLike<number>;
  /** Complete chunks (length, type, data, CRC) to put between IHDR and IDAT, e.g. an iCCP from `pngChunks`. */
  extraChunks?: Buffer[];
}): Buffer {
  const { width, height, bitDepth, colorType, samples } = opts;
  const ch = SAMPLES[colorType];
  const bps = bitDepth / 8;
  if (samples.length !== width * height * ch)
    throw new Error(`encodePng: ${samples.length} samples for ${width}x${height}x${ch}`);
  const rowBytes = width * ch * bps;
  const raw = Buffer.alloc((rowBytes + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (rowBytes + 1);
    raw[o] = 0; // filter: none
    for (let i = 0; i < width * ch; i++) {
      const v = samples[y * width * ch + i]!;
      if (bitDepth === 8) raw[o + 1 + i] = v;
      else raw.writeUInt16BE(v, o + 1 + i * 2);
    }
  }
  return Buffer.concat([
    PNG_SIGNATURE,
    ihdr(width, height, bitDepth, colorType),
    ...(opts.extraChunks ?? []),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** The chunks of a PNG file, each as its complete bytes (length, type, data, CRC). */
export function pngChunks(png: Buffer): { type: string; bytes: Buffer }[] {
  const out: { type: string; bytes: Buffer }[] = [];
  let off = PNG_SIGNATURE.length;
  while (off + 12 <= png.length) {
    const len = png.readUInt32BE(off);
    out.push({ type: png.toString('latin1', off + 4, off + 8), bytes: png.subarray(off, off + 12 + len) });
    off += 12 + len;
  }
  return out;
}

/** A complete iCCP chunk holding libvips' Display P3 profile (taken from a PNG sharp writes). */
export async function p3IccChunk(): Promise<Buffer> {
  const png = await sharp(new Uint8Array(3), { raw: { width: 1, height: 1, channels: 3 } })
    .withIccProfile('p3')
    .png()
    .toBuffer();
  const iccp = pngChunks(png).find((c) => c.type === 'iCCP');
  if (!iccp) throw new Error('sharp wrote no iCCP chunk');
  return iccp.bytes;
}

/**
 * A PNG whose (valid, CRC-correct) IHDR claims `width` × `height` 8-bit RGB, followed by a tiny IDAT: decoding it
 * would need width × height × 3 bytes, so only a header check can reject it cheaply.
 */
export function pngWithClaimedSize(width: number, height: number): Buffer {
  return Buffer.concat([
    PNG_SIGNATURE,
    ihdr(width, height, 8, 2),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** The deterministic test pattern (same formula as the Pillow golden values were made with). */
export function pattern(width: number, height: number, channels: number): Uint8Array {
  const out = new Uint8Array(width * height * channels);
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++)
        out[o++] = (x * x * 3 + y * 7 + c * 85 + ((x * 13) ^ (y * 29))) & 255;
    }
  }
  return out;
}

/** A photo-like RGB image (smooth gradients plus seeded noise), so JPEG sizes and decode times are realistic. */
export function photoLike(width: number, height: number, seed = 1): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        const smooth = 128 + 100 * Math.sin((x * (c + 1)) / 97 + y / 53) * Math.cos(y / (61 + 7 * c));
        out[o++] = Math.max(0, Math.min(255, Math.round(smooth + ((s >>> 24) - 128) / 16)));
      }
    }
  }
  return out;
}

export function rawRgb(data: Uint8Array, width: number, height: number): Sharp {
  return sharp(data, { raw: { width, height, channels: 3 } });
}

/** Baseline JPEG of an RGB buffer. */
export async function jpegFromRgb(
  data: Uint8Array,
  width: number,
  height: number,
  quality = 90,
): Promise<Buffer> {
  return rawRgb(data, width, height).jpeg({ quality }).toBuffer();
}

/** width × height, left half red, right half blue, stored with EXIF orientation `orientation`. */
export async function halvesJpeg(width: number, height: number, orientation: number): Promise<Buffer> {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rgb[(y * width + x) * 3 + (x < width / 2 ? 0 : 2)] = 255;
  }
  return rawRgb(rgb, width, height).jpeg({ quality: 95 }).withMetadata({ orientation }).toBuffer();
}

/** A CMYK JPEG (no embedded profile) of a solid RGB colour. */
export async function cmykJpeg(
  width: number,
  height: number,
  rgb: [number, number, number],
): Promise<Buffer> {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return rawRgb(data, width, height).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
}

/** An animated GIF, one solid colour per frame. */
export async function animatedGif(
  width: number,
  height: number,
  colours: [number, number, number][],
): Promise<Buffer> {
  const data = new Uint8Array(width * height * colours.length * 3);
  colours.forEach((c, f) => {
    for (let i = 0; i < width * height; i++) data.set(c, (f * width * height + i) * 3);
  });
  return sharp(data, { raw: { width, height: height * colours.length, channels: 3, pageHeight: height } })
    .gif({ loop: 0, delay: 100 })
    .toBuffer();
}
