/** The onnxruntime probe for the NCHWc block size (layout.ts holds the pure geometry that uses it). */
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../onnx/builder.js';
import { encodeModel } from '../../onnx/serialize.js';
import { NCHWC_DOMAIN } from './layout.js';

/**
 * The NCHWc block onnxruntime uses on this machine, probed with a one-node graph (ReorderInput pads 4 channels
 * to one block); null when this onnxruntime build has no NCHWc kernels.
 */
export async function probeNchwcBlock(): Promise<number | null> {
  const g = new GraphBuilder('nchwc_probe');
  const x = g.input('x', 'float32', [1, 4, 1, 1]);
  g.output(g.op('ReorderInput', [x], {}, { domain: NCHWC_DOMAIN }), 'y', 'float32', [1, 'c', 1, 1]);
  try {
    const session = await ort.InferenceSession.create(encodeModel(g), { graphOptimizationLevel: 'disabled' });
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) });
    const block = out.y!.dims[1]!;
    await session.release();
    return block > 1 ? block : null;
  } catch {
    return null;
  }
}
