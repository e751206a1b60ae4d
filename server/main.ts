/**
 * `padserve serve`: settings → worker pools → model manager → HTTP app → listen → default models (first start)
 * → load + warm → ready. The server listens (liveness) while models build and load; readiness waits for them.
 *
 * SIGTERM / SIGINT: readiness turns false, new inference requests get 503 (`shutting_down`), the listener
 * closes, in-flight requests finish, models retire, workers stop, exit 0. If that takes longer than the grace
 * period, the process exits 1 with a log line saying what was still running.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type ServerConfig } from './config.js';
import { buildApp } from './app.js';
import { synthBuilders } from './default-builders.js';
import { Metrics } from '../src/observability/metrics.js';
import { DeferredLogger } from '../src/observability/logging.js';
import { PreprocessPool } from '../src/preprocess/preprocess-pool.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { planThreads } from '../src/threads.js';
import { ModelManager } from '../src/repository/manager.js';
import { ensureDefaultModels, type DefaultBuilders } from '../src/repository/defaults.js';
import type { Lifecycle } from '../src/inference/server-context.js';
import { startGrpc, type GrpcListener } from '../src/grpc/server.js';

export interface RunningServer {
  app: FastifyInstance;
  config: ServerConfig;
  models: ModelManager;
  /** Resolves when models are loaded and warmed (the server is ready). */
  loaded: Promise<void>;
  address: string;
  /** host:port of the gRPC listener (`--grpc`), else null. */
  grpcAddress: string | null;
  /** Drains and stops everything; resolves true when every in-flight request finished within the grace. */
  shutdown(reason?: string): Promise<boolean>;
}

export function packageVersion(): string {
  try {
    const url = new URL(
      import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json',
      import.meta.url,
    );
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export interface StartOptions {
  /** Builders of the default models (tests inject small ones; default: the synth modules). */
  builders?: DefaultBuilders;
  /** Progress display for the default-model build (default: a line/bar on stderr). */
  progress?: (label: string, done: number, total: number, detail?: string) => void;
}

function stderrProgress(): (label: string, done: number, total: number, detail?: string) => void {
  let last = '';
  let lastAt = 0;
  return (label, done, total, detail) => {
    const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
    const now = Date.now();
    if (done < total && now - lastAt < 500) return;
    lastAt = now;
    const line = `building default model ${label}: ${pct}%${detail ? ` ${detail}` : ''}`;
    if (process.stderr.isTTY)
      process.stderr.write(`\r${line.padEnd(last.length)}${done >= total ? '\n' : ''}`);
    else if (line !== last) process.stderr.write(`${line}\n`);
    last = line;
  };
}

/** Starts the server (listening at once; models load in the background). */
export async function startServer(config: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const threads = planThreads({
    workers: config.workers,
    intraOpThreads: config.intraOpThreads,
    preprocessWorkers: config.preprocessWorkers,
  });
  const metrics = new Metrics();
  const lifecycle: Lifecycle = { draining: false, inflight: 0 };
  const preprocess = new PreprocessPool({
    threads: threads.preprocessWorkers,
    maxInputPixels: config.maxImagePixels,
    inlineTextChars: config.inlineTokenizeMaxChars,
    maxQueue: config.maxPreprocessQueue,
  });
  // The pool needs a logger before the app exists: stderr until fastify's is there.
  const log = new DeferredLogger();
  const pool = await InferencePool.start({
    size: threads.workers,
    runTimeoutMs: config.workerRunTimeoutMs,
    retryAfterS: config.retryAfterS,
    log,
  });
  const repoDir = resolve(config.modelRepository);
  const models = new ModelManager({
    repoDir,
    defaults: {
      max_batch_size: config.maxBatchSize,
      max_queue_delay_ms: config.maxQueueDelayMs,
      max_queue_size: config.maxQueueSize,
      instances: config.instances,
      max_batch_tokens: config.maxBatchTokens,
      length_buckets: config.lengthBuckets,
      warmup: config.warmup,
      weights: config.weights,
    },
    pool,
    device: config.device,
    placementCheck: config.placementCheck,
    intraOpThreads: threads.intraOpThreads,
    loadPolicy: config.loadPolicy,
    memoryCapBytes: config.modelMemoryCapMb * 1024 * 1024,
    retryAfterS: config.retryAfterS,
    loadingRetryAfterS: config.loadingRetryAfterS,
    observer: metrics,
    telemetrySampleEvery: config.telemetrySampleEvery,
    log,
  });
  const version = packageVersion();
  const app = await buildApp({ config, models, preprocess, metrics, version, lifecycle });
  log.use(app.log);
  app.log.info(
    { threads, device: config.device, repository: repoDir, loadPolicy: config.loadPolicy },
    `padserve ${version}: ${threads.workers} inference worker(s) × ${threads.intraOpThreads} intra-op thread(s), ${threads.preprocessWorkers} preprocessing worker(s) on ${threads.cores} cores${threads.oversubscribed ? ' (oversubscribed: workers × threads > cores)' : ''}`,
  );
  const address = await app.listen({ host: config.host, port: config.port, backlog: config.listenBacklog });
  let grpc: GrpcListener | null = null;
  if (config.grpc) {
    try {
      grpc = await startGrpc(app.padserve, {
        host: config.host,
        port: config.grpcPort,
        maxMessageBytes: config.maxBodyBytes,
        log: app.log,
      });
    } catch (err) {
      // The gRPC port is taken (or the host cannot be bound): stop what was started, as a failed listen does.
      await app.close();
      await Promise.allSettled([pool.close(), preprocess.close()]);
      throw err;
    }
    app.log.info(`gRPC listening at ${grpc.address}`);
  }

  const loaded = (async () => {
    await preprocess.warm();
    if (config.buildDefaultModels) {
      const built = await ensureDefaultModels(
        repoDir,
        opts.builders ?? synthBuilders,
        opts.progress ?? stderrProgress(),
        { cudaForm: config.device === 'cuda' },
      );
      if (built.length) app.log.info(`built default models: ${built.join(', ')}`);
    }
    await models.start();
    if (!models.names().length) app.log.warn(`model repository ${repoDir} holds no models`);
    app.log.info(`ready: ${models.names().length} model(s) (${config.loadPolicy} policy)`);
  })();
  loaded.catch((err: Error) => app.log.error({ err }, `startup failed: ${err.message}`));

  let stopping: Promise<boolean> | null = null;
  const shutdown = (reason = 'shutdown'): Promise<boolean> => {
    if (stopping) return stopping;
    stopping = (async () => {
      app.log.info(
        `${reason}: draining (${lifecycle.inflight} request(s) in flight, grace ${config.shutdownGraceMs} ms)`,
      );
      lifecycle.draining = true;
      models.drain();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<false>(
        (res) => (timer = setTimeout(() => res(false), config.shutdownGraceMs)),
      );
      // Keep-alive connections that go idle during the drain are closed as they do (close() only closes the
      // ones idle at the time it is called).
      const sweeper = setInterval(() => app.server.closeIdleConnections?.(), 100);
      const drained = (async () => {
        // Both listeners stop accepting and wait for their in-flight requests.
        await Promise.all([app.close(), grpc?.close()]);
        app.log.info('listener closed; in-flight requests finished');
        await models.close();
        app.log.info('models released');
        return true as const;
      })();
      const clean = await Promise.race([drained, grace]);
      clearTimeout(timer);
      clearInterval(sweeper);
      if (!clean) {
        grpc?.forceClose();
        app.log.error(`grace period over with ${lifecycle.inflight} request(s) still in flight`);
      }
      await Promise.allSettled([pool.close(), preprocess.close()]);
      return clean;
    })();
    return stopping;
  };
  return { app, config, models, loaded, address, grpcAddress: grpc?.address ?? null, shutdown };
}

/** The `padserve serve` command. */
export async function serveCommand(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  const server = await startServer(config);
  const onSignal = (sig: NodeJS.Signals) => {
    void server.shutdown(`received ${sig}`).then((clean) => {
      server.app.log.info(clean ? 'drained; exiting' : 'exiting after the grace period');
      process.exit(clean ? 0 : 1);
    });
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    await server.loaded;
  } catch {
    // Building the default models or reading the repository failed (already logged): exit so that a
    // supervisor sees it, instead of serving forever without readiness.
    await server.shutdown('startup failed');
    process.exit(1);
  }
}
