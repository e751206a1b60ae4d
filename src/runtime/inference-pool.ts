/**
 * The inference worker pool: `size` worker threads, each owning the onnxruntime sessions of the model instances
 * assigned to it. A model instance lives in exactly one worker (its weights exist once per process, whatever the
 * pool size); instances are spread over workers by weight bytes. The micro-batcher sends an instance at most one
 * batch at a time, so a worker's queue is short and its compute threads are its session's intra-op threads.
 *
 * Faults: a worker that exits or errors is replaced; the calls it had in flight fail with a retryable
 * `worker_failed` error (503), and its instances are loaded again into the replacement. A run that takes longer
 * than `runTimeoutMs` is treated as a hung worker: the worker is terminated and replaced the same way.
 */
import type { Worker } from 'node:worker_threads';
import { DEFAULT_RETRY_AFTER_S, ServeError } from '../observability/errors.js';
import type { ExecutionDevice, Feeds } from './session.js';
import type { HostTensor } from '../tensor.js';
import { startWorker } from '../threads.js';
import type { WorkerReply, WorkerRequest } from './inference-worker.js';
import { placementLine, placementWarning, type PlacementCheck, type PlacementSummary } from './placement.js';
import type { Logger } from '../observability/logging.js';

export interface PoolOptions {
  size: number;
  /** A run longer than this means a hung worker (terminated and replaced). */
  runTimeoutMs: number;
  log: Logger;
  /** Seconds of `Retry-After` on the 503 of a crashed or hung worker (`--retry-after-s`). */
  retryAfterS?: number;
}

/**
 * Restart policy of a worker that exits. A worker that had come online is replaced at once (a crash is one bad
 * batch, not a broken worker). One that exits again before coming online waits `RESTART_BACKOFF_BASE_MS * 2^n`
 * (400 ms, 800 ms, ... capped at `RESTART_BACKOFF_MAX_MS`), and after `MAX_FAILED_STARTS` such starts in a row
 * (~12 s of retrying: the model files or the native runtime are broken, not a transient fault) it is given up and
 * its requests fail with `worker_exited`, so a crash loop costs a handful of loads, not the CPU forever.
 */
export const MAX_FAILED_STARTS = 5;
export const RESTART_BACKOFF_BASE_MS = 200;
export const RESTART_BACKOFF_MAX_MS = 10_000;

export interface InstanceSpec {
  /** Unique per instance: `<model>/<version>#<instance>`. */
  key: string;
  dir: string;
  device: ExecutionDevice;
  intraOpThreads: number;
  /** Memory-map the external weights (no prepacking): sessions over one file share it. */
  shareWeights: boolean;
  /** For placement: bytes of weights this instance holds. */
  weightBytes: number;
  /**
   * Profile one probe run at load to count the nodes each execution provider got (logged; `handle.placement`):
   * 'cuda' (default) when the session runs on CUDA, 'always', or 'off'. Costs a second session load and a run.
   */
  placementCheck?: PlacementCheck;
}

export interface RunResult {
  outputs: Record<string, HostTensor<'float32'>>;
  computeMs: number;
}

type Distributive<T> = T extends unknown ? Omit<T, 'id'> : never;
type Outgoing = Distributive<WorkerRequest>;

interface Pending {
  resolve: (r: WorkerReply & { ok: true }) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | null;
  op: WorkerRequest['op'];
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  pending: Map<number, Pending>;
  specs: Map<string, InstanceSpec>;
  weightBytes: number;
  /** Resolves when the worker is up and its instances are (re)loaded. */
  ready: Promise<void>;
  online: boolean;
  /** Consecutive restarts that never came online (backoff). */
  failedStarts: number;
}

export class InstanceHandle {
  constructor(
    private readonly pool: InferencePool,
    readonly spec: InstanceSpec,
    readonly slot: number,
    readonly device: ExecutionDevice,
    readonly loadMs: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    /** Nodes per execution provider from the load's placement check (null when it did not run). */
    readonly placement: PlacementSummary | null = null,
  ) {}

  get key(): string {
    return this.spec.key;
  }

  /** `outputs`: the outputs to fetch (default: the session's default outputs, see ModelSession.run). */
  run(feeds: Feeds, transfer: ArrayBuffer[] = [], outputs?: string[]): Promise<RunResult> {
    return this.pool.run(this, feeds, transfer, outputs);
  }

  release(): Promise<void> {
    return this.pool.unload(this);
  }
}

let nextMessageId = 1;

export class InferencePool {
  private readonly slots: WorkerSlot[] = [];
  private readonly logged = new Set<string>();
  private closing = false;

  private constructor(private readonly opts: PoolOptions) {}

  static async start(opts: PoolOptions): Promise<InferencePool> {
    const pool = new InferencePool(opts);
    for (let i = 0; i < Math.max(1, opts.size); i++) pool.slots.push(pool.spawn(i));
    await Promise.all(pool.slots.map((s) => s.ready));
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Thread ids of the workers (for diagnostics). */
  get threadIds(): number[] {
    return this.slots.map((s) => s.worker.threadId);
  }

  /** Loads an instance into the worker holding the fewest weight bytes. */
  async load(spec: InstanceSpec): Promise<InstanceHandle> {
    const slot = [...this.slots].sort(
      (a, b) => a.weightBytes - b.weightBytes || a.specs.size - b.specs.size,
    )[0]!;
    slot.specs.set(spec.key, spec);
    slot.weightBytes += spec.weightBytes;
    try {
      await slot.ready;
      const r = await this.call(slot, loadRequest(spec), 0);
      if (r.op !== 'load') throw new Error('worker answered a load with ' + r.op);
      for (const line of r.logs) {
        if (this.logged.has(line)) continue; // e.g. "cuda unavailable": said once, not once per model
        this.logged.add(line);
        this.opts.log.warn(line);
      }
      if (r.placement) {
        this.opts.log.info(`placement of ${spec.key} on ${r.device}: ${placementLine(r.placement)}`);
        const warning = placementWarning(r.placement, r.device);
        if (warning) this.opts.log.warn(`${spec.key}: ${warning}`);
      }
      return new InstanceHandle(
        this,
        spec,
        slot.index,
        r.device,
        r.loadMs,
        r.inputNames,
        r.outputNames,
        r.placement,
      );
    } catch (err) {
      slot.specs.delete(spec.key);
      slot.weightBytes -= spec.weightBytes;
      throw err;
    }
  }

  async run(
    h: InstanceHandle,
    feeds: Feeds,
    transfer: ArrayBuffer[],
    outputs?: string[],
  ): Promise<RunResult> {
    let slot = this.slots[h.slot]!;
    for (;;) {
      await slot.ready;
      if (this.slots[h.slot] === slot) break;
      slot = this.slots[h.slot]!; // replaced while we waited: wait for the replacement
    }
    if (!slot.specs.has(h.key))
      throw new ServeError('not_ready', 'instance_unloaded', `model instance ${h.key} is not loaded`);
    const msg: Outgoing = outputs
      ? { op: 'run', key: h.key, feeds, outputs }
      : { op: 'run', key: h.key, feeds };
    const r = await this.call(slot, msg, this.opts.runTimeoutMs, transfer);
    if (r.op !== 'run') throw new Error('worker answered a run with ' + r.op);
    return { outputs: r.outputs, computeMs: r.computeMs };
  }

  async unload(h: InstanceHandle): Promise<void> {
    const slot = this.slots[h.slot]!;
    if (!slot.specs.delete(h.key)) return;
    slot.weightBytes -= h.spec.weightBytes;
    await slot.ready.catch(() => undefined);
    await this.call(slot, { op: 'unload', key: h.key }, 0).catch((err) =>
      this.opts.log.warn(`unload ${h.key}: ${(err as Error).message}`),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** For tests and diagnostics: kills a worker as a crash would. */
  async crash(slotIndex: number): Promise<void> {
    await this.slots[slotIndex]?.worker.terminate();
  }

  private spawn(
    index: number,
    specs = new Map<string, InstanceSpec>(),
    weightBytes = 0,
    failedStarts = 0,
  ): WorkerSlot {
    const worker = startWorker(import.meta.url, 'inference-worker', { name: `padserve-inference-${index}` });
    const slot: WorkerSlot = {
      index,
      worker,
      pending: new Map(),
      specs,
      weightBytes,
      ready: Promise.resolve(),
      online: false,
      failedStarts,
    };
    let online!: () => void;
    let failed!: (e: unknown) => void;
    const up = new Promise<void>((res, rej) => {
      online = res;
      failed = rej;
    });
    worker.on('message', (msg: WorkerReply | { ready: true }) => {
      if ('ready' in msg) {
        slot.online = true;
        return online();
      }
      const p = slot.pending.get(msg.id);
      if (!p) return;
      slot.pending.delete(msg.id);
      if (p.timer) clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg);
      else if (p.op === 'load')
        p.reject(new ServeError('internal', 'model_load_failed', `model load failed: ${msg.error.message}`));
      else p.reject(new ServeError('internal', 'inference_failed', `inference failed: ${msg.error.message}`));
    });
    worker.on('error', (err) => this.opts.log.error(`inference worker ${index} error: ${err.message}`));
    worker.on('exit', (code) => {
      failed(
        new ServeError(
          'worker_failed',
          'worker_exited',
          `inference worker ${index} exited (${code}) while starting`,
        ),
      );
      this.onExit(slot, code);
    });
    slot.ready = up.then(() => this.restore(slot));
    slot.ready.catch(() => undefined);
    return slot;
  }

  /** Loads the slot's instances (after a restart) one by one. */
  private async restore(slot: WorkerSlot): Promise<void> {
    for (const spec of slot.specs.values()) {
      await this.call(slot, loadRequest(spec), 0);
      this.opts.log.info(`inference worker ${slot.index}: reloaded ${spec.key} after a restart`);
    }
  }

  private onExit(slot: WorkerSlot, code: number): void {
    const err = new ServeError(
      'worker_failed',
      'worker_crashed',
      `inference worker ${slot.index} stopped (exit code ${code}); retry the request`,
      { retryAfterS: this.opts.retryAfterS ?? DEFAULT_RETRY_AFTER_S },
    );
    for (const p of slot.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
    slot.pending.clear();
    if (this.closing || this.slots[slot.index] !== slot) return;
    slot.ready = Promise.reject(err);
    slot.ready.catch(() => undefined);
    const failedStarts = slot.online ? 0 : slot.failedStarts + 1;
    if (failedStarts > MAX_FAILED_STARTS) {
      this.opts.log.error(
        `inference worker ${slot.index} failed to start ${failedStarts} times in a row; giving up on it`,
      );
      return;
    }
    const delay = failedStarts
      ? Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_BASE_MS * 2 ** failedStarts)
      : 0;
    this.opts.log.error(
      `inference worker ${slot.index} exited with code ${code}; starting a replacement in ${delay} ms (${slot.specs.size} instances to reload)`,
    );
    const replace = () => {
      if (!this.closing)
        this.slots[slot.index] = this.spawn(slot.index, slot.specs, slot.weightBytes, failedStarts);
    };
    if (delay) setTimeout(replace, delay).unref();
    else replace();
  }

  private call(
    slot: WorkerSlot,
    msg: Outgoing,
    timeoutMs: number,
    transfer: ArrayBuffer[] = [],
  ): Promise<WorkerReply & { ok: true }> {
    const id = nextMessageId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: null, op: msg.op };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          slot.pending.delete(id);
          reject(
            new ServeError(
              'worker_failed',
              'inference_timeout',
              `inference took longer than ${timeoutMs} ms; the worker is restarted`,
              { retryAfterS: this.opts.retryAfterS ?? DEFAULT_RETRY_AFTER_S },
            ),
          );
          this.opts.log.error(`inference worker ${slot.index}: run exceeded ${timeoutMs} ms, terminating it`);
          void slot.worker.terminate();
        }, timeoutMs);
      }
      slot.pending.set(id, p);
      try {
        slot.worker.postMessage({ ...msg, id } as WorkerRequest, transfer);
      } catch (err) {
        slot.pending.delete(id);
        if (p.timer) clearTimeout(p.timer);
        reject(err);
      }
    });
  }
}

/** The worker message that (re)creates an instance's session: the same for a first load and a restore. */
function loadRequest(spec: InstanceSpec): Omit<Extract<WorkerRequest, { op: 'load' }>, 'id'> {
  const { key, dir, device, intraOpThreads, shareWeights, placementCheck } = spec;
  return {
    op: 'load',
    key,
    dir,
    device,
    intraOpThreads,
    shareWeights,
    ...(placementCheck === undefined ? {} : { placementCheck }),
  };
}
