/**
 * HTTP vs gRPC (`npm run loadtest -- protocols`): the same V2 inference requests through both protocols of one
 * server (`padserve serve --grpc`), closed loop at each concurrency, HTTP and gRPC points alternating so that
 * both see the same machine state:
 *
 * - classify-equivalent: PAD-Net ResNet-50 on one preprocessed photo (FP32 [1, 3, 224, 224]); HTTP with the
 *   binary tensor extension (binary in, binary out), gRPC with raw_input_contents / raw_output_contents.
 * - GLUE-equivalent: PAD-MoE BERT MNLI on sentence pairs as BYTES `text` / `text_pair` (tokenised by the
 *   server); HTTP JSON, gRPC raw BYTES.
 *
 * Both sides skip /classify's image decode and /glue's JSON shaping, so the difference is the protocol stack
 * (fastify + JSON/binary parsing vs grpc-js + protobuf). Default concurrencies 1 and 16.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readModelCard } from '../src/model/folder.js';
import type { ResNetCard } from '../src/model/card.js';
import { connectInference } from '../src/grpc/client.js';
import { bytesElements } from '../src/inference/v2-codec.js';
import { imageToTensor } from '../src/preprocess/image.js';
import { bertModel, ensureModel, resnetModel } from './repo.js';
import type { RequestSpec } from './closed.js';
import { glueModel, IMAGE_MODEL, pointAt, ratio, type CompareOptions } from './configs.js';
import { grpcClosedPoint, type GrpcRequestSpec } from './grpc-closed.js';
import { FIXTURE_IMAGES_DIR } from './images.js';
import { newReport } from './report.js';
import { withServer } from './run-server.js';
import { stamp } from './scenarios.js';
import { freePort, type ServerTarget } from './server.js';
import { closedPoint, pointLine } from './sweep.js';
import { glueRequests } from './text.js';
import type { LoadtestReport, Series } from './types.js';
import { primeOrThrow } from './workloads.js';

export const PROTOCOL_CONCURRENCIES = [1, 16];

interface Workload {
  what: 'classify-equivalent' | 'GLUE-equivalent';
  http: RequestSpec[];
  grpc: GrpcRequestSpec[];
  httpTarget: string;
  grpcTarget: string;
}

async function imageWorkload(model: string, log: CompareOptions['log']): Promise<Workload> {
  const dir = await ensureModel({ family: 'resnet', variant: 'pad' }, log);
  const card = readModelCard(dir) as ResNetCard;
  const photo = readFileSync(join(FIXTURE_IMAGES_DIR, 'coffee.jpg'));
  const x = await imageToTensor(photo, card.preprocess, { maxInputPixels: 40e6 });
  const bytes = Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength);
  const shape = [1, ...x.shape.slice(1)];
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'pixel_values', datatype: 'FP32', shape, parameters: { binary_data_size: bytes.length } },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  const path = `/v2/models/${model}/infer`;
  return {
    what: 'classify-equivalent',
    http: [
      {
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/octet-stream',
          'inference-header-content-length': String(header.length),
        },
        body: Buffer.concat([header, bytes]),
        label: 'coffee.jpg FP32 tensor',
      },
    ],
    grpc: [
      {
        method: 'ModelInfer',
        request: {
          model_name: model,
          inputs: [{ name: 'pixel_values', datatype: 'FP32', shape }],
          raw_input_contents: [bytes],
        },
        label: 'coffee.jpg FP32 tensor',
      },
    ],
    httpTarget: `POST ${path} (binary tensor extension)`,
    grpcTarget: `ModelInfer ${model} (raw contents)`,
  };
}

function glueWorkload(model: string): Workload {
  const pairs = glueRequests(['mnli'], 64, 42).map((r) => Object.values(r.body) as [string, string]);
  const path = `/v2/models/${model}/infer`;
  const inputs = [
    { name: 'text', datatype: 'BYTES', shape: [1] },
    { name: 'text_pair', datatype: 'BYTES', shape: [1] },
  ];
  return {
    what: 'GLUE-equivalent',
    http: pairs.map(([a, b]) => ({
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(
        JSON.stringify({ inputs: inputs.map((t, i) => ({ ...t, data: [i === 0 ? a : b] })) }),
      ),
    })),
    grpc: pairs.map(([a, b]) => ({
      method: 'ModelInfer',
      request: { model_name: model, inputs, raw_input_contents: [bytesElements([a]), bytesElements([b])] },
    })),
    httpTarget: `POST ${path} (JSON BYTES text/text_pair, 64 MNLI pairs)`,
    grpcTarget: `ModelInfer ${model} (raw BYTES, 64 MNLI pairs)`,
  };
}

/** Sends each gRPC request once (loads lazy models, checks they answer) before any timing. */
async function primeGrpc(address: string, requests: readonly GrpcRequestSpec[]): Promise<void> {
  const client = connectInference(address);
  try {
    for (const r of requests.slice(0, 16)) await client.call(r.method, r.request, { timeoutMs: 600_000 });
  } finally {
    client.close();
  }
}

async function sideBySide(
  t: ServerTarget,
  address: string,
  w: Workload,
  o: CompareOptions,
): Promise<[Series, Series]> {
  const rate = await primeOrThrow(t.baseUrl, w.http, 16);
  await primeGrpc(address, w.grpc);
  const http: Series = { label: `${w.what}, HTTP`, target: w.httpTarget, group: w.what, points: [] };
  const grpc: Series = { label: `${w.what}, gRPC`, target: w.grpcTarget, group: w.what, points: [] };
  for (const c of o.concurrencies) {
    const h = await closedPoint(t, w.http, c, o.timing, rate);
    http.points.push(h);
    o.log(pointLine(http.label, h));
    const g = await grpcClosedPoint(t, address, w.grpc, c, o.timing, rate);
    grpc.points.push(g);
    o.log(pointLine(grpc.label, g));
  }
  return [http, grpc];
}

export async function compareProtocols(o: CompareOptions): Promise<LoadtestReport> {
  const report = newReport(o.name ?? `protocols-${stamp()}`, 'padserve: HTTP vs gRPC (V2 inference)', {
    quick: o.quick,
    concurrencies: o.concurrencies,
    ...o.timing,
  });
  const grpcPort = await freePort();
  const address = `127.0.0.1:${grpcPort}`;
  const text = glueModel('mnli');
  const spec = {
    label: 'protocols',
    models: [resnetModel(IMAGE_MODEL, 'pad', 8), bertModel(text, 'mnli', 'pad', 32)],
    args: ['--grpc', '--grpc-port', String(grpcPort)],
  };
  const series = await withServer(spec, o.log, async (t) => [
    ...(await sideBySide(t, address, await imageWorkload(IMAGE_MODEL, o.log), o)),
    ...(await sideBySide(t, address, glueWorkload(text), o)),
  ]);
  report.series.push(...series);
  for (let i = 0; i < series.length; i += 2) {
    const [http, grpc] = [series[i]!, series[i + 1]!];
    for (const c of o.concurrencies) {
      const h = pointAt(http, c);
      const g = pointAt(grpc, c);
      const what = http.group ?? http.label;
      report.summary[`${what} c=${c}: gRPC / HTTP throughput`] = ratio(g?.throughputRps, h?.throughputRps);
      report.summary[`${what} c=${c}: p50 ms HTTP / gRPC`] =
        `${h?.latencyMs.p50.toFixed(2) ?? 'n/a'} / ${g?.latencyMs.p50.toFixed(2) ?? 'n/a'}`;
    }
  }
  report.notes.push(
    'HTTP and gRPC points alternate on one server (same models, batcher and workers). HTTP: autocannon, one TCP connection per concurrent request, pre-built bodies, answers not parsed; gRPC: grpc-js in this process, one HTTP/2 channel multiplexing the concurrent calls (as Triton/KServe gRPC clients do), requests serialized once, answers not decoded. Both clients share the machine with the server: see the client CPU column. gRPC statuses are counted under the HTTP status of the same meaning.',
  );
  return report;
}
