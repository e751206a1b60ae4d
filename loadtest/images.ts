/**
 * Image upload bodies: the fixture photos (test/fixtures/images) plus photos re-encoded with sharp at common sizes and formats
 * (640×480 / 1920×1080 JPEG, 800×600 PNG, 512×512 WebP), wrapped as multipart/form-data (field `image`).
 * Built once at startup as Buffers: autocannon sends them unchanged (its CLI `-i` would corrupt binary data).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { FIXTURES_DIR } from './paths.js';

export interface ImageFile {
  name: string;
  contentType: string;
  bytes: Buffer;
  width: number;
  height: number;
}

export const FIXTURE_IMAGES_DIR = join(FIXTURES_DIR, 'images');

const TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
};

interface Variant {
  width: number;
  height: number;
  format: 'jpeg' | 'png' | 'webp';
}

export const GENERATED_VARIANTS: readonly Variant[] = [
  { width: 640, height: 480, format: 'jpeg' },
  { width: 1920, height: 1080, format: 'jpeg' },
  { width: 800, height: 600, format: 'png' },
  { width: 512, height: 512, format: 'webp' },
];

export function fixtureImages(dir = FIXTURE_IMAGES_DIR): ImageFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => TYPES[extname(f).toLowerCase()])
    .sort()
    .map((f) => ({
      name: f,
      contentType: TYPES[extname(f).toLowerCase()]!,
      bytes: readFileSync(join(dir, f)),
      width: 0,
      height: 0,
    }));
}

/** Re-encodes `source` (a photo) at a size and format; a gradient when there is no source photo. */
export async function encodeVariant(source: Buffer | null, v: Variant): Promise<ImageFile> {
  const base = source
    ? sharp(source).resize(v.width, v.height, { fit: 'cover' })
    : sharp({
        create: { width: v.width, height: v.height, channels: 3, background: { r: 90, g: 140, b: 60 } },
      });
  const encoded =
    v.format === 'jpeg'
      ? base.jpeg({ quality: 85 })
      : v.format === 'png'
        ? base.png()
        : base.webp({ quality: 80 });
  const bytes = await encoded.toBuffer();
  const ext = v.format === 'jpeg' ? 'jpg' : v.format;
  return {
    name: `generated-${v.width}x${v.height}.${ext}`,
    contentType: `image/${v.format}`,
    bytes,
    width: v.width,
    height: v.height,
  };
}

async function withSize(f: ImageFile): Promise<ImageFile> {
  const m = await sharp(f.bytes).metadata();
  return { ...f, width: m.width ?? 0, height: m.height ?? 0 };
}

/** Fixture photos and generated variants (re-encoded from the fixture photos, cycling through them). */
export async function loadImageSet(opts: { generated?: boolean; dir?: string } = {}): Promise<ImageFile[]> {
  const fixtures = await Promise.all(fixtureImages(opts.dir).map(withSize));
  const photos = fixtures.filter((f) => f.contentType === 'image/jpeg');
  const generated =
    opts.generated === false
      ? []
      : await Promise.all(
          GENERATED_VARIANTS.map((v, i) =>
            encodeVariant(photos[i % Math.max(1, photos.length)]?.bytes ?? null, v),
          ),
        );
  const all = [...fixtures, ...generated];
  if (!all.length)
    throw new Error(`no images: ${opts.dir ?? FIXTURE_IMAGES_DIR} is missing and generation is off`);
  return all;
}

/** A small fixed image for latency-sensitive comparisons (decode + resize cost stays small). */
export async function smallImage(): Promise<ImageFile> {
  const photo = fixtureImages().find((f) => f.contentType === 'image/jpeg');
  return encodeVariant(photo?.bytes ?? null, { width: 256, height: 256, format: 'jpeg' });
}

export const MULTIPART_BOUNDARY = '----padserve-loadtest-7f3a9c';

/** A multipart/form-data body with one file part `image` (and optional text fields). */
export function multipartBody(
  file: ImageFile,
  fields: Record<string, string> = {},
  boundary = MULTIPART_BOUNDARY,
): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  const filename = basename(file.name).replace(/"/g, '');
  parts.push(
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\nContent-Type: ${file.contentType}\r\n\r\n`,
    ),
  );
  parts.push(file.bytes, Buffer.from(`\r\n--${boundary}--\r\n`));
  return Buffer.concat(parts);
}

export function multipartContentType(boundary = MULTIPART_BOUNDARY): string {
  return `multipart/form-data; boundary=${boundary}`;
}
