/**
 * Closed loop over gRPC: `connections` concurrent callers on one channel (HTTP/2 multiplexes them over one
 * loopback connection, as a Triton/KServe gRPC client does), each keeping one ModelInfer in flight, rotating
 * through the pre-built requests. Warmup, window and server probe as the HTTP closed loop (closed.ts, sweep.ts):
 * only calls that complete inside the window count. Bounded in time (the window, a per-call deadline) and in
 * count (`maxCalls`). gRPC codes are recorded under the HTTP status of the same meaning (OK 200,
 * RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504), so the report's columns read the same.
 */
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { connectInference, encodeRequest } from '../src/grpc/client.js';
import type { RawRun } from './closed.js';
import { buildPoint, ServerProbe } from './point.js';
import { settle } from './prometheus.js';
import type { ServerTarget } from './server.js';
import { pointDuration, warmupDuration, type Timing } from './sweep.js';
import type { Point } from './types.js';

export interface GrpcRequestSpec {
  method: 'ModelInfer';
  request: object;
  label?: string;
}

export interface GrpcClosedOptions {
  /** host:port of padserve's gRPC listener (loopback). */
  address: string;
  requests: readonly GrpcRequestSpec[];
  connections: number;
  warmupS: number;
  durationS: number;
  /** Per-call deadline (s). */
  timeoutS?: number;
  /** Stop sending after this many calls (a bound on a very fast server). */
  maxCalls?: number;
  /** Bearer token for a server started with --api-token. */
  token?: string;
  onOpen?: () => Promise<void>;
  onClose?: () => Promise<void>;
}

const STATUS_AS_HTTP: Partial<Record<Status, string>> = {
  [Status.OK]: '200',
  [Status.INVALID_ARGUMENT]: '400',
  [Status.UNAUTHENTICATED]: '401',
  [Status.NOT_FOUND]: '404',
  [Status.RESOURCE_EXHAUSTED]: '429',
  [Status.INTERNAL]: '500',
  [Status.UNAVAILABLE]: '503',
  [Status.DEADLINE_EXCEEDED]: '504',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runGrpcClosedWindow(o: GrpcClosedOptions): Promise<RawRun> {
  if (!o.requests.length) throw new Error('no requests to send');
  const client = connectInference(o.address);
  // Serialized once, like autocannon's pre-built bodies; answers are not decoded (autocannon does not parse them).
  const encoded = o.requests.map((r) => ({ method: r.method, bytes: encodeRequest(r.method, r.request) }));
  const rec: RawRun = { latenciesMs: [], status: {}, errors: 0, sent: 0, wallS: 0, clientCpuS: 0 };
  let counting = o.warmupS <= 0;
  let running = true;
  let calls = 0;
  const maxCalls = o.maxCalls ?? 1_000_000;
  const loop = async (start: number) => {
    for (let i = start; running && calls < maxCalls; i++) {
      const spec = encoded[i % encoded.length]!;
      calls++;
      const t0 = performance.now();
      let key: string;
      try {
        await client.callRaw(spec.method, spec.bytes, {
          timeoutMs: (o.timeoutS ?? 30) * 1000,
          ...(o.token !== undefined ? { token: o.token } : {}),
        });
        key = '200';
      } catch (err) {
        const code = (err as ServiceError).code;
        key = STATUS_AS_HTTP[code] ?? `grpc-${code}`;
        if (code === Status.CANCELLED) key = 'error';
      }
      if (!counting) continue;
      if (key === 'error') rec.errors++;
      else rec.status[key] = (rec.status[key] ?? 0) + 1;
      if (key === '200') rec.latenciesMs.push(performance.now() - t0);
    }
  };
  const loops = Array.from({ length: o.connections }, (_, i) => loop(i));
  try {
    if (o.warmupS > 0) await sleep(o.warmupS * 1000);
    await o.onOpen?.();
    counting = true;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(o.durationS * 1000);
    counting = false;
    rec.wallS = (performance.now() - t0) / 1000;
    const d = process.cpuUsage(cpu0);
    rec.clientCpuS = (d.user + d.system) / 1e6;
    await o.onClose?.();
    running = false;
    await Promise.all(loops);
  } finally {
    running = false;
    client.close();
  }
  const answered = Object.values(rec.status).reduce((a, b) => a + b, 0);
  return { ...rec, sent: answered + rec.errors };
}

/** One closed-loop gRPC point, measured like an HTTP point (sweep.ts closedWindowPoints). */
export async function grpcClosedPoint(
  target: ServerTarget,
  address: string,
  requests: readonly GrpcRequestSpec[],
  concurrency: number,
  timing: Timing,
  rateEstimate?: number,
): Promise<Point> {
  await settle(target.baseUrl);
  const durationS = pointDuration(timing, concurrency, rateEstimate);
  const probe = new ServerProbe(target);
  let server = null as Awaited<ReturnType<ServerProbe['end']>> | null;
  const raw = await runGrpcClosedWindow({
    address,
    requests,
    connections: concurrency,
    warmupS: warmupDuration(timing, concurrency, rateEstimate),
    durationS,
    onOpen: () => probe.begin(),
    onClose: async () => {
      server = await probe.end();
    },
  });
  return buildPoint(
    raw,
    { mode: 'closed', concurrency, durationS },
    server ?? { meanBatch: null, cpuPct: null, rssMb: null },
  );
}
