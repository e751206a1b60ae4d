/**
 * Telemetry: the graphs' optional `router_probs` (ResNet PAD convs) and `expert_tokens` (BERT PAD-MoE) outputs
 * reproduce the fixtures' router decisions, are fetched only on request, `expert_tokens` is padding-invariant,
 * the Prometheus gauges summarise them (and vanish on unload), and a server sampling every batch shows them in
 * `/metrics` without changing any answer.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCommand as convertResNet } from '../../src/convert/resnet/command.js';
import { convertCommand as convertBert } from '../../src/convert/bert/command.js';
import { Metrics, normalisedEntropy } from '../../src/observability/metrics.js';
import { ModelSession, type Feeds } from '../../src/runtime/session.js';
import { int64Tensor } from '../../src/tensor.js';
import { loadFixture } from '../support/resnet-fixtures.js';
import {
  BERT_FIXTURE,
  IMAGE_MODEL,
  PHOTOS,
  RESNET_FIXTURE,
  TEXT_MODEL,
  fixtureRepository,
  metrics,
  metricValue,
  postImage,
  postJson,
  startTestServer,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

const tmp = mkdtempSync(join(tmpdir(), 'padserve-telemetry-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function quietly<T>(f: () => Promise<T>): Promise<T> {
  const { log, error } = console;
  console.log = () => undefined;
  console.error = () => undefined;
  return f().finally(() => {
    console.log = log;
    console.error = error;
  });
}

describe('ResNet router_probs', () => {
  const fx = loadFixture('resnet-tiny');
  let session: ModelSession;
  beforeAll(async () => {
    const dir = join(tmp, 'resnet');
    await quietly(() => convertResNet(RESNET_FIXTURE, dir, { name: 'resnet-tiny' }));
    session = await ModelSession.load(dir, { intraOpThreads: 2 });
  });
  afterAll(() => session?.release());

  it('reproduces the fixture π of every PAD conv (1e-5); logits stay the first, default output', async () => {
    const expected = fx.json.debug!.attention_pi_all!.values;
    const card = session.card;
    expect(card.telemetry).toMatchObject({ output: 'router_probs', kind: 'router_probs', width: 4 });
    expect(card.telemetry!.layers).toEqual(Object.keys(expected));
    expect(session.outputNames[0]).toBe('logits');
    const c = fx.cases[0]!;
    const feeds: Feeds = { pixel_values: { dtype: 'float32', shape: c.inputShape, data: c.input } };
    expect(Object.keys(await session.run(feeds))).toEqual(['logits']);
    const out = await session.run(feeds, ['logits', 'router_probs']);
    const [B, P, K] = out.router_probs!.shape;
    expect([B, P, K]).toEqual([c.inputShape[0], card.telemetry!.layers.length, 4]);
    card.telemetry!.layers.forEach((layer, l) => {
      for (let b = 0; b < B!; b++)
        for (let k = 0; k < K!; k++)
          expect(
            Math.abs(out.router_probs!.data[(b * P! + l) * K! + k]! - expected[layer]![b]![k]!),
            `${layer} image ${b} kernel ${k}`,
          ).toBeLessThanOrEqual(1e-5);
    });
  });
});

describe('BERT expert_tokens', () => {
  const fixture = JSON.parse(readFileSync(join(BERT_FIXTURE, 'fixture.json'), 'utf8'));
  const [B, L] = fixture.inputs.input_ids.shape as [number, number];
  const ints = (f: string) => {
    const b = readFileSync(join(BERT_FIXTURE, f));
    return new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  const inputs = {
    input_ids: ints('input_ids.bin'),
    attention_mask: ints('attention_mask.bin'),
    token_type_ids: ints('token_type_ids.bin'),
  };
  const lengths = fixture.input_layout.map((r: { length: number }) => r.length) as number[];
  let session: ModelSession;
  beforeAll(async () => {
    const dir = join(tmp, 'bert');
    await quietly(() => convertBert(BERT_FIXTURE, dir, { name: 'bert-tiny' }));
    session = await ModelSession.load(dir, { intraOpThreads: 2 });
  });
  afterAll(() => session?.release());

  const feedsOf = (rows: number[], width: number): Feeds => {
    const pick = (src: BigInt64Array) =>
      rows.flatMap((b) => Array.from({ length: width }, (_, p) => (p < lengths[b]! ? src[b * L + p]! : 0n)));
    return {
      input_ids: int64Tensor(pick(inputs.input_ids), [rows.length, width]),
      attention_mask: int64Tensor(pick(inputs.attention_mask), [rows.length, width]),
      token_type_ids: int64Tensor(pick(inputs.token_type_ids), [rows.length, width]),
    };
  };

  it("reproduces the fixture's per-expert counts of real tokens", async () => {
    const topk = fixture.debug.topk_indices_all_layers as Record<string, number[][]>;
    const card = session.card;
    const E = card.family === 'bert' ? card.architecture.experts : 0;
    expect(card.telemetry).toMatchObject({
      output: 'expert_tokens',
      kind: 'expert_tokens',
      width: E,
      topK: 2,
    });
    expect(card.telemetry!.layers).toEqual(Object.keys(topk));
    const feeds: Feeds = Object.fromEntries(
      Object.entries(inputs).map(([k, v]) => [k, int64Tensor(v, [B, L])]),
    );
    expect(Object.keys(await session.run(feeds))).toEqual(['logits']);
    const out = (await session.run(feeds, ['expert_tokens'])).expert_tokens!;
    const M = card.telemetry!.layers.length;
    expect(out.shape).toEqual([B, M, E]);
    card.telemetry!.layers.forEach((layer, l) => {
      const want = new Float64Array(B * E);
      topk[layer]!.forEach((sel, t) => {
        if (inputs.attention_mask[t] !== 1n) return;
        for (const e of sel) want[Math.floor(t / L) * E + e]! += 1;
      });
      for (let b = 0; b < B; b++) {
        const got = Array.from({ length: E }, (_, e) => out.data[(b * M + l) * E + e]!);
        expect(got, `${layer} sequence ${b}`).toEqual(Array.from(want.subarray(b * E, (b + 1) * E)));
        expect(got.reduce((a, x) => a + x, 0)).toBe(2 * lengths[b]!);
      }
    });
  });

  it('is padding- and batch-invariant', async () => {
    const M = session.card.telemetry!.layers.length;
    const E = session.card.telemetry!.width;
    const alone = await Promise.all(
      lengths.map(async (len, b) =>
        Array.from((await session.run(feedsOf([b], len), ['expert_tokens'])).expert_tokens!.data),
      ),
    );
    for (const [rows, width] of [
      [[2, 0, 1], 24],
      [[1, 2, 2, 0], 40],
    ] as [number[], number][]) {
      const out = (await session.run(feedsOf(rows, width), ['logits', 'expert_tokens'])).expert_tokens!;
      rows.forEach((b, i) =>
        expect(Array.from(out.data.subarray(i * M * E, (i + 1) * M * E))).toEqual(alone[b]),
      );
    }
  });
});

describe('telemetry gauges', () => {
  it('normalised entropy: 0 for one kernel, 1 for uniform', () => {
    expect(normalisedEntropy([1, 0, 0, 0], 0, 4)).toBe(0);
    expect(normalisedEntropy([0.25, 0.25, 0.25, 0.25], 0, 4)).toBeCloseTo(1, 12);
    expect(normalisedEntropy([0.5, 0.5], 0, 2)).toBeCloseTo(1, 12);
  });

  it('summarises sampled batches, sums expert load to k, and removes the series on unload', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const router = { output: 'router_probs', kind: 'router_probs' as const, layers: ['a', 'b'], width: 2 };
    // two images: layer a one-hot / uniform, layer b uniform / uniform
    m.telemetry('r', 1, router, {
      dtype: 'float32',
      shape: [2, 2, 2],
      data: new Float32Array([1, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
    });
    const moe = { output: 'expert_tokens', kind: 'expert_tokens' as const, layers: ['x'], width: 3, topK: 2 };
    m.telemetry('t', 2, moe, {
      dtype: 'float32',
      shape: [2, 1, 3],
      data: new Float32Array([3, 1, 2, 0, 2, 0]),
    });
    let text = (await m.render()).body;
    expect(
      metricValue(text, 'padserve_router_entropy', { model: 'r', version: '1', layer: 'a' }),
    ).toBeCloseTo(0.5, 6);
    expect(
      metricValue(text, 'padserve_router_entropy', { model: 'r', version: '1', layer: 'b' }),
    ).toBeCloseTo(1, 6);
    // 4 real tokens × 2 selections: expert loads 3/4, 3/4, 2/4
    expect(metricValue(text, 'padserve_expert_load', { model: 't', layer: 'x', expert: '0' })).toBeCloseTo(
      0.75,
      6,
    );
    expect(metricValue(text, 'padserve_expert_load', { model: 't', layer: 'x', expert: '2' })).toBeCloseTo(
      0.5,
      6,
    );
    expect(metricValue(text, 'padserve_expert_load', { model: 't', layer: 'x' })).toBeCloseTo(2, 6);
    m.state('r', 1, 'unloaded');
    m.state('t', 2, 'unloaded');
    text = (await m.render()).body;
    expect(text).not.toMatch(/^padserve_router_entropy\{/m);
    expect(text).not.toMatch(/^padserve_expert_load\{/m);
  });
});

describe('server /metrics', () => {
  let repo: FixtureRepo;
  let sampled: TestServer;
  let plain: TestServer;
  beforeAll(async () => {
    repo = await fixtureRepository();
    sampled = await startTestServer(repo.dir, { telemetrySampleEvery: 1 });
    plain = await startTestServer(repo.dir, { telemetrySampleEvery: 0 });
  });
  afterAll(async () => {
    await sampled?.close();
    await plain?.close();
    repo?.cleanup();
  });

  it('shows router entropy and expert load series in range, answers unchanged', async () => {
    const pairs = {
      pairs: [
        ['A man plays a guitar.', 'A person makes music.'],
        ['Short.', 'A considerably longer hypothesis sentence with many more words in it than the premise.'],
      ],
    };
    for (const s of [sampled, plain])
      expect((await metrics(s.url)).match(/^padserve_router_entropy\{/m)).toBeNull();
    const answers: unknown[][] = [[], []];
    for (const [i, s] of [sampled, plain].entries()) {
      for (const p of PHOTOS.slice(0, 3)) {
        const r = await postImage(s.url, readFileSync(p), '?top_k=5');
        expect(r.status).toBe(200);
        answers[i]!.push(((await r.json()) as { predictions: unknown }).predictions);
      }
      const g = await postJson(s.url, '/glue/mnli', pairs);
      expect(g.status).toBe(200);
      answers[i]!.push(((await g.json()) as { results: unknown }).results);
    }
    expect(answers[0]).toEqual(answers[1]);

    const text = await metrics(sampled.url);
    const entropy = text.split('\n').filter((l) => l.startsWith('padserve_router_entropy{'));
    const load = text.split('\n').filter((l) => l.startsWith('padserve_expert_load{'));
    expect(entropy.length).toBe(16); // resnet-tiny: 16 PAD convs
    expect(load.length).toBe(4 * 8); // bert-tiny: 2 layers × 2 linears × 8 experts
    for (const l of entropy) {
      expect(l).toContain(`model="${IMAGE_MODEL}"`);
      const v = Number(l.split(' ').pop());
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    for (const l of load) {
      expect(l).toContain(`model="${TEXT_MODEL}"`);
      const v = Number(l.split(' ').pop());
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    const layer = 'bert.encoder.layer.0.intermediate.dense';
    expect(metricValue(text, 'padserve_expert_load', { model: TEXT_MODEL, layer })).toBeCloseTo(2, 5);
    const off = await metrics(plain.url);
    expect(off).not.toMatch(/^padserve_router_entropy\{/m);
    expect(off).not.toMatch(/^padserve_expert_load\{/m);
  });
});
