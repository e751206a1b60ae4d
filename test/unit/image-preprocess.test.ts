import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { IMAGE_FIXTURES, PADNET_FIXTURES } from '../support/paths.js';
import { IMAGENET_PREPROCESS, type ImagePreprocessSpec } from '../../src/model/card.js';
import {
  centerCropOffset,
  decodeImage,
  imageToTensor,
  preprocessImage,
  preprocessImageAsync,
  shorterSideSize,
  sniffImageFormat,
  stackImages,
  type DecodedImage,
} from '../../src/preprocess/image.js';
import { ImageError } from '../../src/preprocess/image-errors.js';
import { pilResize, type PilFilter } from '../../src/preprocess/pil-resample.js';
import {
  animatedGif,
  cmykJpeg,
  encodePng,
  halvesJpeg,
  jpegFromRgb,
  p3IccChunk,
  pattern,
  photoLike,
  pngWithClaimedSize,
} from '../support/images.js';
import { MNIST_PREPROCESS } from '../support/mnist-model.js';

const IMAGES = IMAGE_FIXTURES;
const MNIST = join(PADNET_FIXTURES, 'resnet-mnist');
const LIMITS = { maxInputPixels: 40_000_000 };
/** Encodes raw samples as a PNG and decodes it back under the default limits. */
const decodePng = (png: Parameters<typeof encodePng>[0]): Promise<DecodedImage> =>
  decodeImage(encodePng(png), LIMITS);

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const f32 = (path: string): Float32Array => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

function diffStats(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.length };
}

async function expectImageError(p: Promise<unknown>, code: string, status: number): Promise<ImageError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ImageError);
  const ie = e as ImageError;
  expect(ie.code).toBe(code);
  expect(ie.status).toBe(status);
  return ie;
}

/** Pixel (x, y) of a decoded image. */
const px = (img: DecodedImage, x: number, y: number): number[] => {
  const o = (y * img.width + x) * 3;
  return [img.data[o]!, img.data[o + 1]!, img.data[o + 2]!];
};

describe('pilResize (Pillow Image.resize, 8-bit)', () => {
  // sha256 of Pillow's output for test/support/images.ts `pattern` inputs (made with Pillow 11.3, whose 8-bit
  // resampler is the one of 9.4; the same code reproduces the 9.4-made fixtures below bit for bit).
  const golden: [PilFilter, number, number, number, number, number, number[] | null, string][] = [
    [
      'bicubic',
      451,
      300,
      3,
      384,
      256,
      null,
      '8aa560b5ddd92a502eb8b2916934f4d328fc83bb5f7b1f58e0d0fb57e5241db1',
    ],
    ['bicubic', 17, 13, 3, 40, 29, null, 'b8266b90edca1368e1d42551033eae09fb8b4ce353b5b030ea4ec669e032276a'],
    [
      'nearest',
      451,
      300,
      3,
      224,
      149,
      null,
      'f05a849349213723039146fdccc0498dd6c744aac6ceef75ac0d665f7ec582aa',
    ],
    ['nearest', 17, 13, 3, 40, 29, null, '45f04a96fcf4cd848a869293d97f930f83f57ca7b494200197a0dfda688d9a34'],
    [
      'bilinear',
      64,
      48,
      3,
      20,
      30,
      [1.5, 2.25, 40.75, 31.0],
      'b9b7e5b5649ee0c89afddbdc2949408f26bd8e6753ef21122c42884c60fba00e',
    ],
    ['bicubic', 64, 48, 3, 64, 20, null, '8ab684125cbf89c0b09aadd05f96abac1f744f952da4050548ccb4f217ce0433'],
    ['box', 100, 80, 3, 33, 27, null, 'cd0244490e6fa8774cefad31c3a8c8b5344ee65119f9494190f5ce0e511e9650'],
    ['bilinear', 28, 28, 1, 32, 32, null, '5dbfa12a10431809ffff7b1468e1132d381508db93ebb713767ff3d2833dabf0'],
    [
      'bilinear',
      1280,
      960,
      3,
      341,
      256,
      null,
      '84c3ba77d301b2f666076e9b9037695dfd470a0f8ef733a0ba00724ccb0678ec',
    ],
  ];
  it.each(golden)(
    '%s %ix%i (%i ch) -> %ix%i box %j matches Pillow',
    (filter, w, h, ch, ow, oh, box, hash) => {
      const src = { width: w, height: h, channels: ch, data: pattern(w, h, ch) };
      const b = box ? { x0: box[0]!, y0: box[1]!, x1: box[2]!, y1: box[3]! } : undefined;
      const out = pilResize(src, ow, oh, filter, { box: b });
      expect([out.width, out.height, out.channels]).toEqual([ow, oh, ch]);
      expect(sha256(out.data)).toBe(hash);
    },
  );

  it.each(['bilinear', 'bicubic', 'nearest', 'box'] as PilFilter[])(
    '%s: an output window equals the crop of the full result',
    (filter) => {
      for (const [w, h, ow, oh] of [
        [451, 300, 384, 256],
        [30, 50, 70, 20],
        [9, 9, 9, 4],
      ] as const) {
        const src = { width: w, height: h, channels: 3, data: pattern(w, h, 3) };
        const full = pilResize(src, ow, oh, filter);
        const win = {
          left: Math.floor(ow / 5),
          top: Math.floor(oh / 3),
          width: Math.ceil(ow / 2),
          height: Math.ceil(oh / 2),
        };
        const part = pilResize(src, ow, oh, filter, { window: win });
        const expected = Buffer.alloc(win.width * win.height * 3);
        for (let y = 0; y < win.height; y++) {
          const s = ((y + win.top) * ow + win.left) * 3;
          expected.set(full.data.subarray(s, s + win.width * 3), y * win.width * 3);
        }
        expect(Buffer.from(part.data).equals(expected)).toBe(true);
      }
    },
  );

  it('identity size returns an equal copy', () => {
    const src = { width: 5, height: 4, channels: 3, data: pattern(5, 4, 3) };
    const out = pilResize(src, 5, 4, 'bilinear');
    expect(out.data).toEqual(src.data);
    expect(out.data).not.toBe(src.data);
  });
});

describe('ImageNet photo fixtures', () => {
  const meta = JSON.parse(readFileSync(join(IMAGES, 'images.json'), 'utf8')) as {
    images: {
      name: string;
      file: string;
      decoded_size_wh: [number, number];
      resized_size_wh: [number, number];
      crop_left_top: [number, number];
      decoded_rgb_sha256: string;
      input: { file: string };
    }[];
  };

  it.each(meta.images.map((m) => [m.name, m] as const))(
    '%s reproduces <name>.input.bin bit for bit',
    async (_name, m) => {
      const decoded = await decodeImage(readFileSync(join(IMAGES, m.file)), LIMITS);
      expect([decoded.width, decoded.height]).toEqual(m.decoded_size_wh);
      expect(sha256(decoded.data)).toBe(m.decoded_rgb_sha256);
      const r = shorterSideSize(decoded.width, decoded.height, 256);
      expect([r.width, r.height]).toEqual(m.resized_size_wh);
      expect([centerCropOffset(r.width, 224), centerCropOffset(r.height, 224)]).toEqual(m.crop_left_top);

      const chw = preprocessImage(decoded, IMAGENET_PREPROCESS);
      const { max, mean } = diffStats(chw, f32(join(IMAGES, m.input.file)));
      console.log(`${m.name}: pil-bilinear max abs diff ${max}, mean ${mean}`);
      expect(max).toBeLessThanOrEqual(1e-6);
    },
  );

  it('sharp-linear lands within the README bounds of the reference', async () => {
    const spec: ImagePreprocessSpec = { ...IMAGENET_PREPROCESS, kernel: 'sharp-linear' };
    expect(() =>
      preprocessImage({ width: 1, height: 1, channels: 3, data: new Uint8Array(3) }, spec),
    ).toThrow(/preprocessImageAsync/);
    for (const m of meta.images) {
      const decoded = await decodeImage(readFileSync(join(IMAGES, m.file)), LIMITS);
      const { max, mean } = diffStats(
        await preprocessImageAsync(decoded, spec),
        f32(join(IMAGES, m.input.file)),
      );
      expect(mean).toBeLessThanOrEqual(0.006);
      expect(max).toBeLessThanOrEqual(0.06);
    }
  });

  it('imageToTensor and stackImages give NCHW float32', async () => {
    const tensors = await Promise.all(
      meta.images
        .slice(0, 3)
        .map((m) => imageToTensor(readFileSync(join(IMAGES, m.file)), IMAGENET_PREPROCESS, LIMITS)),
    );
    for (const t of tensors) expect(t.shape).toEqual([1, 3, 224, 224]);
    const batch = stackImages(tensors, 224);
    expect(batch.dtype).toBe('float32');
    expect(batch.shape).toEqual([3, 3, 224, 224]);
    expect(Array.from(batch.data.subarray(3 * 224 * 224, 3 * 224 * 224 + 8))).toEqual(
      Array.from(tensors[1]!.data.subarray(0, 8)),
    );
    expect(() => stackImages([new Float32Array(5)], 224)).toThrow(/expected/);
  });
});

describe('resnet-mnist samples', () => {
  it('the 30 PNGs reproduce samples/input.bin bit for bit', async () => {
    const fixture = JSON.parse(readFileSync(join(MNIST, 'fixture.json'), 'utf8')) as {
      samples: { files: string[] };
    };
    const files = fixture.samples.files;
    expect(files).toHaveLength(30);
    const chws: Float32Array[] = [];
    for (const f of files) {
      const decoded = await decodeImage(readFileSync(join(MNIST, f)), LIMITS);
      expect([decoded.width, decoded.height]).toEqual([28, 28]);
      chws.push(preprocessImage(decoded, MNIST_PREPROCESS));
    }
    const batch = stackImages(chws, 32);
    expect(batch.shape).toEqual([30, 3, 32, 32]);
    const { max } = diffStats(batch.data, f32(join(MNIST, 'samples/input.bin')));
    console.log(`mnist: max abs diff ${max}`);
    expect(max).toBe(0);
  });
});

describe('decodeImage', () => {
  it('honours EXIF orientation 6 (rotate 90° clockwise)', async () => {
    const jpg = await halvesJpeg(64, 32, 6);
    const img = await decodeImage(jpg, LIMITS);
    expect([img.width, img.height, img.orientation]).toEqual([32, 64, 6]);
    // stored: left half red, right half blue -> displayed: top half red, bottom half blue
    const [r1, , b1] = px(img, 16, 10);
    const [r2, , b2] = px(img, 16, 54);
    expect(r1).toBeGreaterThan(200);
    expect(b1).toBeLessThan(50);
    expect(r2).toBeLessThan(50);
    expect(b2).toBeGreaterThan(200);
  });

  it('replicates grayscale to 3 channels exactly', async () => {
    const gray = pattern(13, 7, 1);
    const img = await decodePng({ width: 13, height: 7, bitDepth: 8, colorType: 0, samples: gray });
    expect([img.width, img.height, img.channels, img.hadAlpha, img.format]).toEqual([13, 7, 3, false, 'png']);
    for (let i = 0; i < gray.length; i++)
      expect(px(img, i % 13, Math.floor(i / 13))).toEqual([gray[i], gray[i], gray[i]]);
  });

  it('drops alpha without compositing or premultiplying (RGBA and gray+alpha)', async () => {
    const w = 8;
    const h = 6;
    const rgba = new Uint8Array(w * h * 4);
    const ga = new Uint8Array(w * h * 2);
    for (let i = 0; i < w * h; i++) {
      rgba.set([(i * 37) & 255, (i * 11) & 255, (i * 5 + 100) & 255, (i * 53) & 255], i * 4);
      ga.set([(i * 29) & 255, i % 3 === 0 ? 0 : 128], i * 2);
    }
    const a = await decodePng({ width: w, height: h, bitDepth: 8, colorType: 6, samples: rgba });
    const b = await decodePng({ width: w, height: h, bitDepth: 8, colorType: 4, samples: ga });
    expect(a.hadAlpha).toBe(true);
    expect(b.hadAlpha).toBe(true);
    for (let i = 0; i < w * h; i++) {
      expect(Array.from(a.data.subarray(i * 3, i * 3 + 3))).toEqual(
        Array.from(rgba.subarray(i * 4, i * 4 + 3)),
      );
      expect(Array.from(b.data.subarray(i * 3, i * 3 + 3))).toEqual([ga[i * 2], ga[i * 2], ga[i * 2]]);
    }
  });

  it('ignores the embedded ICC profile of RGB images, as Pillow does', async () => {
    const w = 16;
    const h = 8;
    const samples = pattern(w, h, 3);
    const withIcc = encodePng({
      width: w,
      height: h,
      bitDepth: 8,
      colorType: 2,
      samples,
      extraChunks: [await p3IccChunk()],
    });
    const meta = await sharp(withIcc).metadata();
    expect(meta.icc?.length).toBeGreaterThan(100);
    // sharp on its own would convert P3 to sRGB and change the values
    expect(Buffer.from(await sharp(withIcc).raw().toBuffer()).equals(Buffer.from(samples))).toBe(false);
    const img = await decodeImage(withIcc, LIMITS);
    expect(Buffer.from(img.data).equals(Buffer.from(samples))).toBe(true);
  });

  it('converts 16-bit PNG (RGB and gray) to 8 bits by the high byte', async () => {
    const w = 9;
    const h = 4;
    const rgb16 = Array.from({ length: w * h * 3 }, (_, i) => (i * 2111 + 77) % 65536);
    const g16 = Array.from({ length: w * h }, (_, i) => (i * 1777 + 300) % 65536);
    const a = await decodePng({ width: w, height: h, bitDepth: 16, colorType: 2, samples: rgb16 });
    const b = await decodePng({ width: w, height: h, bitDepth: 16, colorType: 0, samples: g16 });
    expect(Array.from(a.data)).toEqual(rgb16.map((v) => v >> 8));
    expect(Array.from(b.data)).toEqual(g16.flatMap((v) => [v >> 8, v >> 8, v >> 8]));
  });

  it('converts CMYK JPEG to sRGB', async () => {
    const jpg = await cmykJpeg(16, 16, [200, 40, 60]);
    const img = await decodeImage(jpg, LIMITS);
    expect([img.width, img.height, img.channels, img.format]).toEqual([16, 16, 3, 'jpeg']);
    const [r, g, b] = px(img, 8, 8);
    expect(Math.abs(r! - 200)).toBeLessThan(25);
    expect(Math.abs(g! - 40)).toBeLessThan(25);
    expect(Math.abs(b! - 60)).toBeLessThan(25);
  });

  it('takes the first frame of an animated GIF', async () => {
    const gif = await animatedGif(12, 10, [
      [255, 0, 0],
      [0, 0, 255],
      [0, 255, 0],
    ]);
    const img = await decodeImage(gif, LIMITS);
    expect([img.width, img.height, img.format]).toEqual([12, 10, 'gif']);
    expect(px(img, 5, 5)).toEqual([255, 0, 0]);
    expect(px(img, 11, 9)).toEqual([255, 0, 0]);
  });

  it('accepts a Uint8Array view with an offset', async () => {
    const png = encodePng({ width: 3, height: 2, bitDepth: 8, colorType: 2, samples: pattern(3, 2, 3) });
    const backing = new Uint8Array(png.length + 10);
    backing.set(png, 7);
    const img = await decodeImage(backing.subarray(7, 7 + png.length), LIMITS);
    expect(img.data).toEqual(pattern(3, 2, 3));
  });

  it('rejects SVG, PDF and text before they reach a decoder', async () => {
    const svg = Buffer.from(
      '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">' +
        '<image href="file:///etc/passwd" width="10" height="10"/><rect width="10" height="10"/></svg>',
    );
    for (const bytes of [
      svg,
      Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'),
      Buffer.from('%PDF-1.4\n%...'),
      Buffer.from('hello, world'),
    ]) {
      expect(sniffImageFormat(bytes)).toBeNull();
      await expectImageError(decodeImage(bytes, LIMITS), 'unsupported_image_format', 415);
    }
  });

  it('rejects a truncated JPEG with a typed error', async () => {
    const jpg = await jpegFromRgb(photoLike(256, 192), 256, 192);
    await expect(decodeImage(jpg, LIMITS)).resolves.toBeDefined();
    const e = await expectImageError(
      decodeImage(jpg.subarray(0, Math.floor(jpg.length * 0.6)), LIMITS),
      'image_decode_failed',
      400,
    );
    expect(e.message).toMatch(/jpeg/);
  });

  it('rejects corrupt data behind a valid signature', async () => {
    const bytes = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.alloc(100, 7),
    ]);
    await expectImageError(decodeImage(bytes, LIMITS), 'image_decode_failed', 400);
  });

  it('rejects a PNG claiming 50000x50000 from its header alone', async () => {
    const png = pngWithClaimedSize(50_000, 50_000);
    expect(png.length).toBeLessThan(200);
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    const e = await expectImageError(decodeImage(png, LIMITS), 'image_too_large', 413);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.details).toMatchObject({ width: 50_000, height: 50_000, limit: LIMITS.maxInputPixels });
    // 7.5 GB of pixels were never allocated
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 2 ** 20);
  });

  it('applies the pixel limit to ordinary images too', async () => {
    const png = encodePng({ width: 20, height: 20, bitDepth: 8, colorType: 2, samples: pattern(20, 20, 3) });
    await expectImageError(decodeImage(png, { maxInputPixels: 399 }), 'image_too_large', 413);
    await expect(decodeImage(png, { maxInputPixels: 400 })).resolves.toMatchObject({ width: 20, height: 20 });
  });

  it('rejects empty input', async () => {
    await expectImageError(decodeImage(new Uint8Array(0), LIMITS), 'empty_image', 400);
  });
});

describe('preprocessImage', () => {
  const img = (w: number, h: number): DecodedImage => ({
    width: w,
    height: h,
    channels: 3,
    data: pattern(w, h, 3),
    format: 'png',
    hadAlpha: false,
    orientation: null,
  });

  it('crop offsets follow torchvision (round half to even, zero padding when smaller)', () => {
    expect(centerCropOffset(384, 224)).toBe(80);
    expect(centerCropOffset(225, 224)).toBe(0); // 0.5 -> 0
    expect(centerCropOffset(227, 224)).toBe(2); // 1.5 -> 2
    expect(centerCropOffset(200, 224)).toBe(-12);
    expect(shorterSideSize(1280, 960, 256)).toEqual({ width: 341, height: 256 });
    expect(shorterSideSize(300, 451, 256)).toEqual({ width: 256, height: 384 });
  });

  it('zero-pads when the resized image is smaller than the crop', () => {
    const spec: ImagePreprocessSpec = { ...IMAGENET_PREPROCESS, resizeShorter: 200 };
    const out = preprocessImage(img(300, 200), spec);
    expect(out).toHaveLength(3 * 224 * 224);
    const padValue = Math.fround(Math.fround(0 - Math.fround(0.485)) / Math.fround(0.229));
    expect(out[0]).toBe(padValue); // top-left corner is padding (crop 224 of a 200-high image)
    expect(out[112 * 224 + 112]).not.toBe(padValue);
  });

  it('rejects invalid specs as server misconfiguration', () => {
    const bad = { ...IMAGENET_PREPROCESS, resizeShorter: undefined } as ImagePreprocessSpec;
    expect(() => preprocessImage(img(4, 4), bad)).toThrow(ImageError);
    try {
      preprocessImage(img(4, 4), { ...IMAGENET_PREPROCESS, std: [1, 0, 1] });
    } catch (e) {
      expect((e as ImageError).code).toBe('invalid_preprocess_spec');
      expect((e as ImageError).status).toBe(500);
    }
  });

  it('decodes and preprocesses a 1280x960 JPEG (timing)', async () => {
    const jpg = await jpegFromRgb(photoLike(1280, 960), 1280, 960);
    await imageToTensor(jpg, IMAGENET_PREPROCESS, LIMITS); // warm-up
    const runs = 5;
    let decodeMs = 0;
    let prepMs = 0;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const d = await decodeImage(jpg, LIMITS);
      const t1 = performance.now();
      preprocessImage(d, IMAGENET_PREPROCESS);
      prepMs += performance.now() - t1;
      decodeMs += t1 - t0;
    }
    console.log(
      `1280x960 JPEG: decode ${(decodeMs / runs).toFixed(1)} ms + resize/crop/normalise ${(prepMs / runs).toFixed(1)} ms`,
    );
  });
});

it('fixtures are present', () => {
  expect(existsSync(join(IMAGES, 'images.json'))).toBe(true);
  expect(existsSync(join(MNIST, 'fixture.json'))).toBe(true);
});
