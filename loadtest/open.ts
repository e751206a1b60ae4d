/**
 * Open loop: requests fire at scheduled times (Poisson or constant arrivals) whatever the server's state, the way
 * independent users arrive. autocannon is closed-loop (a slow server slows its own load down), so this is a small
 * client on node:http with a keep-alive agent. Latency is measured from the *scheduled* time, so a late send
 * (event-loop lag, connection setup) counts against the server rather than hiding queueing (no coordinated
 * omission). Bounded: arrivals stop after the duration, stragglers are aborted after `drainS`.
 */
import { Agent, request as httpRequest } from 'node:http';
import { arrivalSchedule, type Arrivals } from './random.js';
import type { RawRun, RequestSpec } from './closed.js';

export interface OpenOptions {
  baseUrl: string;
  requests: readonly RequestSpec[];
  ratePerS: number;
  durationS: number;
  arrivals: Arrivals;
  seed?: number;
  /** Per-request timeout (s). */
  timeoutS?: number;
  /** How long to wait for in-flight requests after the last arrival (s). */
  drainS?: number;
  /** Arrivals beyond this many in flight are counted as errors and not sent (protects the client). */
  maxInflight?: number;
}

interface Outcome {
  status: number | null;
  latencyMs: number;
}

function send(
  agent: Agent,
  base: URL,
  spec: RequestSpec,
  scheduledAt: number,
  timeoutMs: number,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { ...spec.headers };
    if (spec.body) headers['content-length'] = spec.body.length;
    const req = httpRequest(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: spec.method,
        path: spec.path,
        headers,
        timeout: timeoutMs,
      },
      (res) => {
        res.on('data', () => undefined);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, latencyMs: performance.now() - scheduledAt }),
        );
        res.on('error', () => resolve({ status: null, latencyMs: performance.now() - scheduledAt }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: null, latencyMs: performance.now() - scheduledAt }));
    req.end(spec.body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runOpen(opts: OpenOptions): Promise<RawRun> {
  if (!opts.requests.length) throw new Error('no requests to send');
  const schedule = arrivalSchedule(opts.ratePerS, opts.durationS * 1000, opts.arrivals, opts.seed ?? 1);
  const base = new URL(opts.baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const maxInflight = opts.maxInflight ?? 1024;
  const timeoutMs = (opts.timeoutS ?? 30) * 1000;
  const latenciesMs: number[] = [];
  const status: Record<string, number> = {};
  let errors = 0;
  let inflight = 0;
  const pending: Promise<void>[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < schedule.length; i++) {
    const due = t0 + schedule[i]!;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait - 0.5);
    if (inflight >= maxInflight) {
      errors++;
      continue;
    }
    inflight++;
    const spec = opts.requests[i % opts.requests.length]!;
    pending.push(
      send(agent, base, spec, due, timeoutMs).then((o) => {
        inflight--;
        if (o.status === null) errors++;
        else {
          status[o.status] = (status[o.status] ?? 0) + 1;
          if (o.status >= 200 && o.status < 300) latenciesMs.push(o.latencyMs);
        }
      }),
    );
  }
  const drained = await Promise.race([
    Promise.all(pending).then(() => true),
    sleep((opts.drainS ?? 10) * 1000).then(() => false),
  ]);
  if (!drained) errors += inflight;
  agent.destroy();
  const cpu = process.cpuUsage(cpu0);
  return {
    latenciesMs: [...latenciesMs],
    status: { ...status },
    errors,
    sent: schedule.length,
    // Throughput is over the arrival window plus the time the last answers took (bounded by drainS).
    wallS: (performance.now() - t0) / 1000,
    clientCpuS: (cpu.user + cpu.system) / 1e6,
  };
}
