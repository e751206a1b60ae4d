/**
 * The CUDA op list (src/runtime/cuda-ops.ts) on known cases, and every CUDA-form graph the project builds: each
 * node has a CUDA kernel in onnxruntime 1.30 and none forces a host sync. No GPU here: this is the check that the
 * CUDA path is right by construction. A new CUDA form is one more line in CUDA_FORMS.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCommand } from '../../src/convert/bert/command.js';
import { convertCommand as convertResNet } from '../../src/convert/resnet/command.js';
import { readModelCard } from '../../src/model/folder.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { onnx } from '../../src/onnx/proto.js';
import { floatTensor } from '../../src/tensor.js';
import {
  checkCudaForm,
  cudaHasKernel,
  cudaHostSyncNodes,
  cudaUnsupportedNodes,
  CUDA_OPS,
} from '../../src/runtime/cuda-ops.js';
import { synthesizeBert } from '../../src/synth/bert.js';
import { PADNET_FIXTURES } from '../support/paths.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'cuda-ops-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * Every CUDA form the project builds: a name and a builder writing a model folder. `checkCudaForm` reads the
 * graph files `--device cuda` loads (graphFor(card, 'cuda')). `cudaGraph`: the folder carries a separate CUDA
 * form; `cpuFormUnfit`: its CPU form is known not to be CUDA-clean (so the check is seen to catch it).
 */
const CUDA_FORMS: {
  name: string;
  cudaGraph: boolean;
  cpuFormUnfit?: boolean;
  build: (dir: string) => Promise<unknown>;
}[] = [
  {
    name: 'BERT converted (bert-tiny fixture)',
    cudaGraph: true,
    cpuFormUnfit: true, // routed experts: NonZero per expert
    build: (dir) => convertCommand(join(PADNET_FIXTURES, 'bert-tiny'), dir, {}),
  },
  {
    name: 'BERT synth (PAD, 2 layers)',
    cudaGraph: true,
    cpuFormUnfit: true,
    build: (dir) => synthesizeBert({ outDir: dir, task: 'mnli', layers: 2, hidden: 64, seed: 3 }),
  },
  {
    name: 'BERT synth (dense)',
    cudaGraph: false,
    build: (dir) => synthesizeBert({ outDir: dir, task: 'sst2', layers: 1, hidden: 64, variant: 'dense' }),
  },
  {
    name: 'ResNet converted (resnet-tiny fixture, CUDA form)',
    cudaGraph: true,
    build: (dir) =>
      convertResNet(join(PADNET_FIXTURES, 'resnet-tiny', 'model.safetensors'), dir, {
        graph: { layout: 'probe', cudaForm: true },
      }),
  },
];

describe('the CUDA op list (onnxruntime docs/OperatorKernels.md)', () => {
  it('has the kernels the graphs rely on and not the ones known to be CPU-only', () => {
    for (const op of [
      'Conv',
      'MatMul',
      'Gemm',
      'ScatterElements',
      'TopK',
      'GatherElements',
      'LayerNormalization',
    ])
      expect(cudaHasKernel(op), op).toBe(true);
    for (const op of ['MaxUnpool', 'Unique', 'NoSuchOp']) expect(cudaHasKernel(op), op).toBe(false);
    expect(CUDA_OPS.has('com.microsoft.nchwc')).toBe(false);
    for (const op of ['Conv', 'ReorderInput', 'ReorderOutput', 'MaxPool'])
      expect(cudaHasKernel(op, 'com.microsoft.nchwc', 1), `nchwc ${op}`).toBe(false);
    expect(cudaHasKernel('FusedMatMul', 'com.microsoft', 1)).toBe(true);
    // Opset ranges: Scatter was replaced by ScatterElements at 11, Upsample by Resize at 10.
    expect(cudaHasKernel('Scatter', '', 10)).toBe(true);
    expect(cudaHasKernel('Scatter', '', 17)).toBe(false);
    expect(cudaHasKernel('Upsample', '', 17)).toBe(false);
    expect(cudaHasKernel('Gelu', '', 17)).toBe(false); // ai.onnx Gelu is opset 20+
    expect(cudaHasKernel('Gelu', 'com.microsoft', 1)).toBe(true);
  });

  it('names the unsupported and the host-sync nodes of a graph', () => {
    const g = new GraphBuilder('mixed');
    const x = g.input('x', 'float32', [1, 8, 4, 4]);
    const w = g.initializer('w', floatTensor(new Float32Array(8 * 8), [8, 8, 1, 1]));
    const reordered = g.op('ReorderInput', [x], {}, { domain: 'com.microsoft.nchwc', name: 'reorder' });
    const conv = g.op('Conv', [reordered, w], {}, { domain: 'com.microsoft.nchwc', name: 'nchwc_conv' });
    const back = g.op('ReorderOutput', [conv], { channels: 8 }, { domain: 'com.microsoft.nchwc' });
    const [pooled, indices] = g.node(
      'MaxPool',
      [back],
      { kernel_shape: [2, 2], strides: [2, 2] },
      { outputs: 2 },
    );
    const unpooled = g.op('MaxUnpool', [pooled!, indices!], { kernel_shape: [2, 2], strides: [2, 2] });
    const nz = g.op('NonZero', [unpooled], {}, { name: 'nz' });
    g.output(unpooled, 'y', 'float32', [1, 8, 4, 4]);
    g.output(g.op('Cast', [nz], { to: 1 }), 'idx', 'float32', [4, 'n']);
    const model = g.toModel();
    const unsupported = cudaUnsupportedNodes(model);
    expect(unsupported.map((n) => `${n.domain}:${n.op}`)).toEqual([
      'com.microsoft.nchwc:ReorderInput',
      'com.microsoft.nchwc:Conv',
      'com.microsoft.nchwc:ReorderOutput',
      ':MaxUnpool',
    ]);
    expect(unsupported[1]!.name).toMatch(/^nchwc_conv/);
    expect(cudaHostSyncNodes(model).map((n) => n.op)).toEqual(['NonZero']);
    // A bare graph (no opset imports) is checked at the default opset.
    expect(cudaUnsupportedNodes(model.graph!)).toHaveLength(4);
  });
});

describe('every CUDA-form graph the project builds', () => {
  for (const form of CUDA_FORMS) {
    it(`${form.name}: only CUDA kernels, no host syncs`, async () => {
      const dir = join(tmp, form.name.replace(/[^a-z0-9]+/gi, '-'));
      await form.build(dir);
      const report = checkCudaForm(dir);
      expect(report.form).toBe(form.cudaGraph ? 'cudaGraph' : 'graph');
      expect(report.files.length).toBeGreaterThan(0);
      for (const f of report.files) {
        expect(f.unsupported, f.file).toEqual([]);
        expect(f.hostSync, f.file).toEqual([]);
      }
      if (form.cpuFormUnfit) {
        // The separate form exists for a reason: the CPU form is not CUDA-clean (this is what the check catches).
        const card = readModelCard(dir);
        const cpu = onnx.ModelProto.decode(readFileSync(join(dir, card.graph.file)));
        expect(cudaUnsupportedNodes(cpu).length + cudaHostSyncNodes(cpu).length).toBeGreaterThan(0);
      }
    });
  }
});
