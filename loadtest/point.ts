/**
 * One measured load point: scrape the server (and read /proc for a child) before and after a run, then combine
 * the client's view (latency per response, status codes) with the server's (batch sizes, CPU, RSS).
 */
import { latencySummary } from '../src/bench/measure.js';
import type { RawRun } from './closed.js';
import { scrape, serverDelta, type Scrape } from './prometheus.js';
import { procCpuSeconds, procRssMb, type ServerTarget } from './server.js';
import type { LatencyMs, Point } from './types.js';

export interface ServerSide {
  meanBatch: Record<string, number> | null;
  meanPaddedLength?: Record<string, number>;
  cpuPct: number | null;
  rssMb: number | null;
}

export type PointShape = Pick<Point, 'mode' | 'concurrency' | 'targetRate' | 'arrivals' | 'durationS'>;

export function latencyMs(samples: readonly number[]): LatencyMs {
  const s = latencySummary(samples);
  return { p50: s.p50Ms, p90: s.p90Ms, p95: s.p95Ms, p99: s.p99Ms, mean: s.meanMs, max: s.maxMs };
}

export function buildPoint(raw: RawRun, shape: PointShape, server: ServerSide): Point {
  const ok = raw.latenciesMs.length;
  const wall = Math.max(raw.wallS, 1e-9);
  const answered = Object.values(raw.status).reduce((a, b) => a + b, 0);
  const offered = shape.mode === 'open' ? raw.sent / shape.durationS : (answered + raw.errors) / wall;
  return {
    ...shape,
    offeredRps: offered,
    throughputRps: ok / wall,
    requests: raw.sent,
    ok,
    errors: raw.errors,
    status429: raw.status['429'] ?? 0,
    status: raw.status,
    latencyMs: latencyMs(raw.latenciesMs),
    meanBatch: server.meanBatch,
    ...(server.meanPaddedLength && Object.keys(server.meanPaddedLength).length
      ? { meanPaddedLength: server.meanPaddedLength }
      : {}),
    serverCpuPct: server.cpuPct,
    serverRssMb: server.rssMb,
    clientCpuPct: (100 * raw.clientCpuS) / wall,
  };
}

/** The server's side of a measurement window: scrape (and /proc for a child) at begin and at end. */
export class ServerProbe {
  private before: Scrape = [];
  private cpu0: number | null = null;
  private t0 = 0;

  constructor(private readonly target: ServerTarget) {}

  async begin(): Promise<void> {
    this.before = await scrape(this.target.baseUrl);
    this.cpu0 = this.target.pid ? procCpuSeconds(this.target.pid) : null;
    this.t0 = performance.now();
  }

  async end(): Promise<ServerSide> {
    const wallS = (performance.now() - this.t0) / 1000;
    const cpu1 = this.target.pid ? procCpuSeconds(this.target.pid) : null;
    const after = await scrape(this.target.baseUrl);
    const delta = this.before.length > 0 && after.length > 0 ? serverDelta(this.before, after) : null;
    let cpuPct: number | null = null;
    if (this.cpu0 !== null && cpu1 !== null) cpuPct = (100 * (cpu1 - this.cpu0)) / wallS;
    else if (delta) cpuPct = (100 * delta.cpuSeconds) / wallS;
    const rss = this.target.pid ? procRssMb(this.target.pid) : null;
    return {
      meanBatch: delta ? delta.meanBatch : null,
      ...(delta ? { meanPaddedLength: delta.meanPaddedLength } : {}),
      cpuPct,
      rssMb: rss ?? (delta && Number.isFinite(delta.rssMb) ? delta.rssMb : null),
    };
  }
}

/**
 * Runs `run` between two scrapes and returns one point per raw run (several for the mixed scenario, which share
 * the server-side numbers).
 */
export async function measurePoints(
  target: ServerTarget,
  shapes: readonly PointShape[],
  run: () => Promise<RawRun[]>,
): Promise<Point[]> {
  const probe = new ServerProbe(target);
  await probe.begin();
  const raws = await run();
  const server = await probe.end();
  return raws.map((raw, i) => buildPoint(raw, shapes[i] ?? shapes[0]!, server));
}
