/**
 * Prometheus metrics (prom-client), one registry per server instance (tests build several apps in one process).
 * Names follow Prometheus conventions (`_total`, `_seconds`, `_bytes`); every failure is an `outcome` label taken
 * from `FailureReason`, so the label set is bounded. The batcher and model manager report through the
 * `ModelObserver` methods; the HTTP layer through `observeRequest` and the phase histograms. Every queue, inference
 * and batch series is labelled by `model` and `version` (a reload runs two versions side by side).
 */
import client from 'prom-client';
import type { TelemetrySpec } from '../model/card.js';
import type { HostTensor } from '../tensor.js';
import type { FailureReason } from './errors.js';
import type { BatchEvent, ModelState } from './events.js';
import { InferenceStatistics } from './statistics.js';

export type Outcome = 'ok' | FailureReason;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128];

/**
 * Telemetry gauges are exponentially weighted means over sampled batches: per series a weighted sum S and weight
 * N, each sampled batch does S ← d·S + Σ(batch), N ← d·N + n(batch) and the gauge shows S / N. d = 0.8 per
 * sampled batch (the last ~5 sampled batches dominate); n counts images (router entropy) or real tokens (expert
 * load), so a large batch weighs more than a small one.
 */
export const TELEMETRY_DECAY = 0.8;

interface TelemetryState {
  spec: TelemetrySpec;
  /** Per layer (× expert for expert_tokens) weighted sums, and the weight per layer. */
  sums: Float64Array;
  weights: Float64Array;
}

/** Normalised entropy of each row of π: −Σ π ln π / ln K, in [0, 1] (0: one kernel, 1: uniform). */
export function normalisedEntropy(pi: ArrayLike<number>, offset: number, k: number): number {
  if (k < 2) return 0;
  let h = 0;
  for (let j = 0; j < k; j++) {
    const p = pi[offset + j]!;
    if (p > 0) h -= p * Math.log(p);
  }
  return Math.min(1, Math.max(0, h / Math.log(k)));
}

export class Metrics {
  readonly registry = new client.Registry();
  readonly requests: client.Counter<'route' | 'model' | 'outcome'>;
  readonly requestDuration: client.Histogram<'route' | 'model'>;
  readonly queueDuration: client.Histogram<'model' | 'version'>;
  readonly preprocessDuration: client.Histogram<'model'>;
  readonly inferenceDuration: client.Histogram<'model' | 'version'>;
  readonly postprocessDuration: client.Histogram<'model'>;
  readonly batchSize: client.Histogram<'model' | 'version'>;
  readonly batches: client.Counter<'model' | 'version' | 'outcome'>;
  readonly rows: client.Counter<'model' | 'version'>;
  readonly paddedTokens: client.Counter<'model' | 'version'>;
  readonly queueDepth: client.Gauge<'model' | 'version'>;
  readonly dropped: client.Counter<'model' | 'version' | 'reason'>;
  /** Triton-style per version statistics (GET /v2/models/stats). */
  readonly statistics = new InferenceStatistics();
  readonly loadSeconds: client.Gauge<'model' | 'version'>;
  readonly warmupSeconds: client.Gauge<'model' | 'version'>;
  readonly modelReady: client.Gauge<'model' | 'version'>;
  readonly loadFailures: client.Counter<'model' | 'reason'>;
  readonly inflight: client.Gauge;
  readonly routerEntropy: client.Gauge<'model' | 'version' | 'layer'>;
  readonly expertLoad: client.Gauge<'model' | 'version' | 'layer' | 'expert'>;
  private readonly telemetryState = new Map<string, TelemetryState>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry, prefix: '' });
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new client.Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new client.Gauge<L>({ name, help, labelNames, registers });
    this.requests = counter(
      'padserve_requests_total',
      'Inference requests by route, model and outcome ("ok" or the failure reason)',
      ['route', 'model', 'outcome'],
    );
    this.requestDuration = new client.Histogram({
      name: 'padserve_request_duration_seconds',
      help: 'Wall time of successful inference requests, from arrival to response',
      labelNames: ['route', 'model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const phase = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new client.Histogram<L>({
        name: `padserve_${name}_duration_seconds`,
        help,
        labelNames,
        buckets: LATENCY_BUCKETS,
        registers,
      });
    this.queueDuration = phase(
      'queue',
      'Time a request row waited in its model queue before its batch started',
      ['model', 'version'],
    );
    this.preprocessDuration = phase(
      'preprocess',
      'Time to decode / resize / normalise an image or tokenise a text request',
      ['model'],
    );
    this.inferenceDuration = phase(
      'inference',
      'Time a batch took on its model instance (transfer + onnxruntime run + split)',
      ['model', 'version'],
    );
    this.postprocessDuration = phase(
      'postprocess',
      'Time to turn outputs into the answer (softmax, top-k, labels)',
      ['model'],
    );
    this.batchSize = new client.Histogram({
      name: 'padserve_batch_size',
      help: 'Rows per executed batch',
      labelNames: ['model', 'version'],
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.batches = counter('padserve_batches_total', 'Executed batches by outcome', [
      'model',
      'version',
      'outcome',
    ]);
    this.rows = counter(
      'padserve_inference_rows_total',
      'Request rows the model computed (warmup excluded)',
      ['model', 'version'],
    );
    this.paddedTokens = counter(
      'padserve_padded_tokens_total',
      'Text models: padded tokens computed (bucket length × rows)',
      ['model', 'version'],
    );
    this.queueDepth = gauge('padserve_queue_depth', 'Rows waiting in the model version queue', [
      'model',
      'version',
    ]);
    this.dropped = counter(
      'padserve_queue_dropped_total',
      'Queued rows dropped before compute (deadline_exceeded, client_cancelled)',
      ['model', 'version', 'reason'],
    );
    this.loadSeconds = gauge('padserve_model_load_seconds', 'Session creation time of a model version', [
      'model',
      'version',
    ]);
    this.warmupSeconds = gauge('padserve_model_warmup_seconds', 'Warmup time of a model version', [
      'model',
      'version',
    ]);
    this.modelReady = gauge('padserve_model_ready', '1 when a model version takes requests', [
      'model',
      'version',
    ]);
    this.loadFailures = counter(
      'padserve_model_load_failures_total',
      'Loads / reloads that did not swap in, by reason (golden_accuracy_below_minimum, golden_set_unreadable, golden_set_empty, golden_unlabelled, load_error)',
      ['model', 'reason'],
    );
    this.inflight = new client.Gauge({
      name: 'padserve_inflight_requests',
      help: 'Inference requests being handled',
      registers,
    });
    this.routerEntropy = gauge(
      'padserve_router_entropy',
      'PAD conv routers: entropy of π normalised by ln K (0 = one kernel, 1 = uniform), mean over sampled images (exponentially weighted over sampled batches)',
      ['model', 'version', 'layer'],
    );
    this.expertLoad = gauge(
      'padserve_expert_load',
      'PAD-MoE linears: fraction of sampled real tokens routed to each expert (sums to top-k per layer; exponentially weighted over sampled batches)',
      ['model', 'version', 'layer', 'expert'],
    );
  }

  // ModelObserver
  batch(model: string, version: number, e: BatchEvent): void {
    const labels = { model, version: String(version) };
    this.batches.inc({ ...labels, outcome: e.ok ? 'ok' : 'error' });
    if (!e.ok) return;
    this.statistics.execution(model, version, e.size, e.inferenceMs);
    this.batchSize.observe(labels, e.size);
    this.rows.inc(labels, e.size);
    if (e.paddedLength) this.paddedTokens.inc(labels, e.paddedLength * e.size);
    this.inferenceDuration.observe(labels, e.inferenceMs / 1000);
    for (const q of e.queueMs) this.queueDuration.observe(labels, q / 1000);
  }

  drop(model: string, version: number, reason: 'deadline_exceeded' | 'client_cancelled'): void {
    this.dropped.inc({ model, version: String(version), reason });
  }

  depth(model: string, version: number, depth: number): void {
    this.queueDepth.set({ model, version: String(version) }, depth);
  }

  loaded(model: string, version: number, seconds: number, warmupSeconds: number): void {
    this.loadSeconds.set({ model, version: String(version) }, seconds);
    this.warmupSeconds.set({ model, version: String(version) }, warmupSeconds);
  }

  state(model: string, version: number, state: ModelState): void {
    this.modelReady.set({ model, version: String(version) }, state === 'ready' ? 1 : 0);
    if (state === 'unloaded' || state === 'failed') {
      this.removeTelemetry(model, version);
      // An unloaded version's queue is gone: its depth series would otherwise stay at its last value.
      this.queueDepth.remove({ model, version: String(version) });
    }
  }

  /** A sampled batch's telemetry output ([batch, layers, K or E]) → the router entropy / expert load gauges. */
  telemetry(model: string, version: number, spec: TelemetrySpec, output: HostTensor<'float32'>): void {
    const [batch, layers, width] = output.shape as [number, number, number];
    if (output.shape.length !== 3 || layers !== spec.layers.length || width !== spec.width) return;
    const key = `${model}\u0000${version}`;
    let st = this.telemetryState.get(key);
    if (!st || st.spec !== spec) {
      if (st) this.removeTelemetry(model, version);
      const perLayer = spec.kind === 'router_probs' ? 1 : width;
      st = { spec, sums: new Float64Array(layers * perLayer), weights: new Float64Array(layers) };
      this.telemetryState.set(key, st);
    }
    const d = output.data;
    const v = String(version);
    for (let l = 0; l < layers; l++) {
      const layer = spec.layers[l]!;
      if (spec.kind === 'router_probs') {
        let sum = 0;
        for (let b = 0; b < batch; b++) sum += normalisedEntropy(d, (b * layers + l) * width, width);
        st.sums[l] = TELEMETRY_DECAY * st.sums[l]! + sum;
        st.weights[l] = TELEMETRY_DECAY * st.weights[l]! + batch;
        if (st.weights[l]! > 0)
          this.routerEntropy.set({ model, version: v, layer }, st.sums[l]! / st.weights[l]!);
      } else {
        const k = spec.topK ?? 1;
        let selections = 0;
        for (let e = 0; e < width; e++) {
          let count = 0;
          for (let b = 0; b < batch; b++) count += d[(b * layers + l) * width + e]!;
          st.sums[l * width + e] = TELEMETRY_DECAY * st.sums[l * width + e]! + count;
          selections += count;
        }
        // Every real token makes k selections: tokens = selections / k.
        st.weights[l] = TELEMETRY_DECAY * st.weights[l]! + selections / k;
        if (!(st.weights[l]! > 0)) continue;
        for (let e = 0; e < width; e++)
          this.expertLoad.set(
            { model, version: v, layer, expert: String(e) },
            st.sums[l * width + e]! / st.weights[l]!,
          );
      }
    }
  }

  private removeTelemetry(model: string, version: number): void {
    const key = `${model}\u0000${version}`;
    const st = this.telemetryState.get(key);
    if (!st) return;
    this.telemetryState.delete(key);
    const v = String(version);
    for (const layer of st.spec.layers) {
      if (st.spec.kind === 'router_probs') this.routerEntropy.remove({ model, version: v, layer });
      else
        for (let e = 0; e < st.spec.width; e++)
          this.expertLoad.remove({ model, version: v, layer, expert: String(e) });
    }
  }

  loadFailed(model: string, reason: string): void {
    this.loadFailures.inc({ model, reason });
  }

  observeRequest(route: string, model: string, outcome: Outcome, seconds: number): void {
    this.requests.inc({ route, model, outcome });
    if (outcome === 'ok') this.requestDuration.observe({ route, model }, seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
