#!/usr/bin/env node
// Writes data/imagenet-classes.txt (1000 lines, class index order) from the ImageNet class names that
// @tensorflow-models/mobilenet ships (IMAGENET_CLASSES, Apache-2.0). Run: node scripts/extract-imagenet-classes.mjs
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { IMAGENET_CLASSES } = require('@tensorflow-models/mobilenet/dist/imagenet_classes.js');
const names = Array.from({ length: 1000 }, (_, i) => {
  const name = IMAGENET_CLASSES[i];
  if (typeof name !== 'string' || !name.trim() || /[\r\n]/.test(name))
    throw new Error(`class ${i}: missing or invalid name`);
  return name.trim();
});
if (Object.keys(IMAGENET_CLASSES).length !== 1000)
  throw new Error(`expected 1000 classes, found ${Object.keys(IMAGENET_CLASSES).length}`);
const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'imagenet-classes.txt');
writeFileSync(out, `${names.join('\n')}\n`);
console.log(`wrote ${names.length} class names to ${out}`);
