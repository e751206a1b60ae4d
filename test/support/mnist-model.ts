/**
 * The trained `resnet-mnist` fixture: its preprocessing, and the model converted as users are told to, with the
 * example preprocessing and label files (`--preprocess examples/mnist-preprocess.json --labels
 * examples/mnist-labels.txt`). The converter is imported only when called, so importing the spec stays light.
 */
import { join } from 'node:path';
import type { ImagePreprocessSpec, ModelCard } from '../../src/model/card.js';
import { PADNET_FIXTURES, REPO_ROOT } from './paths.js';

export const MNIST_FIXTURE = join(PADNET_FIXTURES, 'resnet-mnist');

/**
 * The fixture's preprocessing, written out by hand from its fixture.json `preprocessing` steps (Pillow BILINEAR
 * resize 28 → 32, gray replicated to RGB, x/255 then the MNIST mean/std). A literal, not read from
 * examples/mnist-preprocess.json, so that the e2e test can check that file against it.
 */
export const MNIST_PREPROCESS: ImagePreprocessSpec = {
  size: 32,
  resize: 'direct',
  kernel: 'pil-bilinear',
  channels: 'rgb',
  mean: [0.1307, 0.1307, 0.1307],
  std: [0.3081, 0.3081, 0.3081],
  scale: 1 / 255,
};

/**
 * Converts the fixture's `checkpoint` (either of its two formats) into the version folder `outDir` as model
 * `name`, with the converter's one-line summary kept off the test output.
 */
export async function convertMnistExample(
  checkpoint: 'model.safetensors' | 'model.pth.tar',
  outDir: string,
  name: string,
): Promise<ModelCard> {
  const { convertCommand } = await import('../../src/convert/resnet/command.js');
  const log = console.log;
  console.log = () => undefined;
  try {
    return await convertCommand(join(MNIST_FIXTURE, checkpoint), outDir, {
      name,
      preprocessFile: join(REPO_ROOT, 'examples', 'mnist-preprocess.json'),
      labelsFile: join(REPO_ROOT, 'examples', 'mnist-labels.txt'),
    });
  } finally {
    console.log = log;
  }
}
