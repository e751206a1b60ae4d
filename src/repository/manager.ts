/**
 * The model manager: what the repository holds, what is loaded, and load / unload / reload without dropping
 * requests. Loading policy:
 * - `all`: every model's served versions are loaded and warmed at start (readiness waits for them);
 * - `lazy`: a model is loaded on its first request (which waits for it), and when a memory cap is set the least
 *   recently used idle models are unloaded to make room.
 * Reload: the new version set is loaded and warmed first, then swapped in atomically; the old versions retire
 * (their queued requests finish, then their sessions are released).
 */
import { DEFAULT_LOADING_RETRY_AFTER_S, ServeError, unknownModel } from '../observability/errors.js';
import type { InferencePool } from '../runtime/inference-pool.js';
import type { PlacementCheck } from '../runtime/placement.js';
import type { ExecutionDevice } from '../runtime/session.js';
import {
  estimateInstanceBytes,
  ServedModel,
  sharesWeights,
  weightsFileId,
  type ModelObserver,
} from './model.js';
import { familyOf } from './family.js';
import { scanModel, scanRepository, type ModelEntry } from './scan.js';
import { checkGolden, GoldenError } from './golden.js';
import type { ServingDefaults } from './serving.js';
import type { Logger } from '../observability/logging.js';

export type LoadPolicy = 'all' | 'lazy';

export interface ManagerOptions {
  repoDir: string;
  defaults: ServingDefaults;
  pool: InferencePool;
  device: ExecutionDevice;
  /** When a load profiles a probe run for node placement (default 'cuda': CUDA sessions only). */
  placementCheck?: PlacementCheck;
  intraOpThreads: number;
  loadPolicy: LoadPolicy;
  /** Lazy policy: unload least recently used idle models to stay under this many bytes (0 = no cap). */
  memoryCapBytes: number;
  /** Seconds of `Retry-After` on 429 / draining / worker 503s (`--retry-after-s`). */
  retryAfterS: number;
  /** Seconds of `Retry-After` while a model loads or is not loaded (`--loading-retry-after-s`; default 2). */
  loadingRetryAfterS?: number;
  observer: ModelObserver;
  log: Logger;
  /** Telemetry sampling: every Nth batch per model version fetches the telemetry output (0 / absent: off). */
  telemetrySampleEvery?: number;
}

interface ModelSlot {
  entry: ModelEntry;
  /** Served versions, ready to take requests. */
  versions: Map<number, ServedModel>;
  /** In-progress load (lazy first use, admin load/reload). */
  loading: Promise<void> | null;
  error: string | null;
  /** Unloaded by an admin: not loaded again until an admin loads it. */
  held: boolean;
}

export class ModelManager {
  private readonly slots = new Map<string, ModelSlot>();
  private started = false;
  private closing = false;

  constructor(private readonly opts: ManagerOptions) {}

  private get loadingRetryAfterS(): number {
    return this.opts.loadingRetryAfterS ?? DEFAULT_LOADING_RETRY_AFTER_S;
  }

  get policy(): LoadPolicy {
    return this.opts.loadPolicy;
  }

  /** Scans the repository and, with the `all` policy, loads every model (one at a time: bounded peak memory). */
  async start(): Promise<void> {
    const scan = scanRepository(this.opts.repoDir, this.opts.defaults);
    for (const p of scan.problems) this.opts.log.warn(`model repository: ${p}`);
    for (const entry of scan.models)
      this.slots.set(entry.name, { entry, versions: new Map(), loading: null, error: null, held: false });
    this.started = true;
    if (this.opts.loadPolicy === 'all') {
      for (const name of this.slots.keys()) {
        await this.load(name).catch((err) =>
          this.opts.log.error(`model ${name} failed to load: ${(err as Error).message}`),
        );
      }
    }
  }

  /** Ready: started, not closing, and (policy `all`) every model not unloaded on purpose is loaded. */
  ready(): boolean {
    if (!this.started || this.closing) return false;
    if (this.opts.loadPolicy === 'lazy') return true;
    for (const s of this.slots.values()) if (!s.held && s.versions.size === 0) return false;
    return true;
  }

  names(): string[] {
    return [...this.slots.keys()];
  }

  entry(name: string): ModelEntry | undefined {
    return this.slots.get(name)?.entry;
  }

  /** Loaded versions of a model (ascending). */
  loaded(name: string): ServedModel[] {
    return [...(this.slots.get(name)?.versions.values() ?? [])].sort((a, b) => a.version - b.version);
  }

  /** The state of a model for status endpoints. */
  status(
    name: string,
  ): { loaded: number[]; loading: boolean; error: string | null; held: boolean } | undefined {
    const s = this.slots.get(name);
    if (!s) return undefined;
    return {
      loaded: [...s.versions.keys()].sort((a, b) => a - b),
      loading: s.loading !== null,
      error: s.error,
      held: s.held,
    };
  }

  /** Model answering a GLUE task: the first (by name) whose serving.json lists it, else one whose card says it. */
  modelForTask(task: string): string | undefined {
    const t = task.toLowerCase();
    for (const s of this.slots.values()) if (s.entry.serving.tasks.includes(t)) return s.entry.name;
    for (const s of this.slots.values()) {
      const card = s.entry.versions[s.entry.versions.length - 1]!.card;
      if (familyOf(card).task(card)?.toLowerCase() === t) return s.entry.name;
    }
    return undefined;
  }

  /** Tasks served (for the route's 404 message and the OpenAPI description). */
  tasks(): string[] {
    const out = new Set<string>();
    for (const s of this.slots.values()) {
      for (const t of s.entry.serving.tasks) out.add(t);
      const card = s.entry.versions[s.entry.versions.length - 1]!.card;
      const task = familyOf(card).task(card);
      if (task) out.add(task.toLowerCase());
    }
    return [...out].sort();
  }

  /** Models of a family, by name. */
  modelsOf(family: 'resnet' | 'bert'): string[] {
    return [...this.slots.values()]
      .filter((s) => s.entry.versions.some((v) => v.card.family === family))
      .map((s) => s.entry.name);
  }

  /**
   * The model version to run a request on: `version` if given (must be served), else the highest loaded. Lazy
   * policy: loads the model first (the request waits). 404 for unknown models/versions, 503 while not loaded.
   */
  async get(name: string, version?: number): Promise<ServedModel> {
    const s = this.slots.get(name);
    if (!s) throw unknownModel(name);
    if (version !== undefined && !s.entry.served.includes(version)) {
      throw new ServeError(
        'not_found',
        'unknown_version',
        `model ${name} has no served version ${version} (served: ${s.entry.served.join(', ')})`,
      );
    }
    if (this.closing)
      throw new ServeError('draining', 'shutting_down', 'the server is shutting down', {
        retryAfterS: this.opts.retryAfterS,
      });
    const pick = () => (version !== undefined ? s.versions.get(version) : this.loaded(name).at(-1));
    let m = pick();
    if (!m && this.opts.loadPolicy === 'lazy' && !s.held) {
      await this.load(name);
      m = pick();
    } else if (!m && s.loading) {
      throw new ServeError('not_ready', 'model_loading', `model ${name} is loading`, {
        retryAfterS: this.loadingRetryAfterS,
      });
    }
    if (!m) {
      const why = s.error ? `failed to load: ${s.error}` : s.held ? 'unloaded' : 'not loaded';
      throw new ServeError('not_ready', 'model_not_ready', `model ${name} is ${why}`, {
        retryAfterS: this.loadingRetryAfterS,
      });
    }
    return m;
  }

  /** The version if loaded (no lazy loading): for readiness and metadata endpoints. */
  peek(name: string, version?: number): ServedModel | undefined {
    const s = this.slots.get(name);
    if (!s) return undefined;
    return version !== undefined ? s.versions.get(version) : this.loaded(name).at(-1);
  }

  /** Loads (or reloads) a model: rescans its folder, warms the new versions, swaps, retires the old ones. */
  load(name: string): Promise<void> {
    const s = this.slots.get(name) ?? this.discover(name);
    if (s.loading) return s.loading;
    s.held = false;
    const p = this.doLoad(s).finally(() => {
      s.loading = null;
    });
    s.loading = p;
    return p;
  }

  /** Unloads every version of a model after its queued requests finish. It stays unloaded until loaded again. */
  async unload(name: string): Promise<void> {
    const s = this.slots.get(name);
    if (!s) throw unknownModel(name);
    if (s.loading) await s.loading.catch(() => undefined);
    s.held = true;
    const old = [...s.versions.values()];
    s.versions.clear();
    await Promise.all(old.map((m) => m.retire()));
    this.opts.log.info(`model ${name}: unloaded`);
  }

  /** Shutdown: no new work; lets queued requests finish; releases every session. */
  async close(): Promise<void> {
    this.closing = true;
    const all = [...this.slots.values()].flatMap((s) => [...s.versions.values()]);
    await Promise.all(all.map((m) => m.retire()));
  }

  /** Marks the manager as draining (readiness false, new requests 503) without releasing anything yet. */
  drain(): void {
    this.closing = true;
  }

  private discover(name: string): ModelSlot {
    const problems: string[] = [];
    const entry = scanModel(this.opts.repoDir, name, this.opts.defaults, problems);
    if (!entry)
      throw new ServeError(
        'not_found',
        'unknown_model',
        `unknown model "${name}"${problems.length ? `: ${problems.join('; ')}` : ''}`,
      );
    const s: ModelSlot = { entry, versions: new Map(), loading: null, error: null, held: false };
    this.slots.set(name, s);
    return s;
  }

  private async doLoad(s: ModelSlot): Promise<void> {
    const name = s.entry.name;
    const problems: string[] = [];
    const entry = scanModel(this.opts.repoDir, name, this.opts.defaults, problems);
    if (!entry) {
      s.error = problems.join('; ') || 'no longer in the repository';
      throw new ServeError('not_found', 'unknown_model', `model ${name}: ${s.error}`);
    }
    await this.makeRoom(name, entry);
    const fresh = new Map<number, ServedModel>();
    try {
      for (const v of entry.versions.filter((x) => entry.served.includes(x.version))) {
        const m = await ServedModel.load({
          name,
          version: v.version,
          dir: v.dir,
          card: v.card,
          serving: entry.serving,
          shareWeights: sharesWeights(
            entry.serving.weights,
            v.dir,
            v.card,
            entry.serving.instances,
            this.weightUses(),
          ),
          pool: this.opts.pool,
          device: this.opts.device,
          placementCheck: this.opts.placementCheck,
          intraOpThreads: this.opts.intraOpThreads,
          retryAfterS: this.opts.retryAfterS,
          observer: this.opts.observer,
          telemetrySampleEvery: this.opts.telemetrySampleEvery,
        });
        fresh.set(v.version, m);
        if (entry.serving.golden) {
          // Accuracy gate: the version is warmed but not swapped in until it scores its golden set.
          const g = await checkGolden(m, entry.dir, entry.serving.golden);
          this.opts.log.info(
            `model ${name} version ${v.version}: golden set ${entry.serving.golden.folder} passed, accuracy ${(100 * g.accuracy).toFixed(1)}% (${g.correct}/${g.images}, minimum ${(100 * entry.serving.golden.min_accuracy).toFixed(1)}%)`,
          );
        }
        this.opts.log.info(
          `model ${name} version ${v.version}: loaded in ${(m.loadMs / 1000).toFixed(2)} s, warmed in ${(m.warmupMs / 1000).toFixed(2)} s (${m.instances.length} instance(s) on ${m.device}, worker ${m.instances.map((h) => h.slot).join(',')}, ${m.sharedWeights ? 'shared memory-mapped' : 'private'} weights)`,
        );
      }
    } catch (err) {
      await Promise.all([...fresh.values()].map((m) => m.retire()));
      s.error = (err as Error).message;
      if (err instanceof GoldenError) {
        this.opts.log.error(
          `model ${name}: not swapped in: ${err.message}${s.versions.size ? `; still serving version(s) ${[...s.versions.keys()].join(', ')}` : '; not ready'}`,
        );
        this.opts.observer.loadFailed?.(name, err.reason);
        // A named, non-internal failure for the admin API (503 with the reason as the code) and lazy loads.
        throw new ServeError('not_ready', err.reason, err.message, {
          retryAfterS: this.opts.retryAfterS,
          cause: err,
          ...(err.result
            ? {
                details: {
                  accuracy: err.result.accuracy,
                  correct: err.result.correct,
                  images: err.result.images,
                },
              }
            : {}),
        });
      } else {
        this.opts.observer.loadFailed?.(name, 'load_error');
      }
      throw err;
    }
    const old = [...s.versions.values()];
    s.entry = entry;
    s.versions = fresh;
    s.error = null;
    const latest = [...fresh.values()].sort((a, b) => b.version - a.version)[0];
    await Promise.all(old.map((m) => m.retire(fresh.get(m.version) ?? latest)));
  }

  /** How many repository model versions use each external weights file (by dev:inode). */
  private weightUses(): Map<string, number> {
    const uses = new Map<string, number>();
    for (const s of this.slots.values()) {
      for (const v of s.entry.versions) {
        const f = weightsFileId(v.dir, v.card);
        if (f) uses.set(f.id, (uses.get(f.id) ?? 0) + 1);
      }
    }
    return uses;
  }

  /** Lazy policy with a cap: unload least recently used idle models until `name` fits. */
  private async makeRoom(name: string, entry: ModelEntry): Promise<void> {
    const cap = this.opts.memoryCapBytes;
    if (this.opts.loadPolicy !== 'lazy' || cap <= 0) return;
    const uses = this.weightUses();
    const need = entry.versions
      .filter((v) => entry.served.includes(v.version))
      .reduce(
        (n, v) =>
          n +
          estimateInstanceBytes(
            v.card,
            sharesWeights(entry.serving.weights, v.dir, v.card, entry.serving.instances, uses),
          ) *
            entry.serving.instances,
        0,
      );
    const used = () =>
      [...this.slots.values()]
        .flatMap((s) => [...s.versions.values()])
        .reduce((n, m) => n + m.memoryBytes, 0);
    const candidates = [...this.slots.values()]
      .filter((s) => s.entry.name !== name && s.versions.size > 0)
      .sort((a, b) => lastUsed(a) - lastUsed(b));
    for (const c of candidates) {
      if (used() + need <= cap) break;
      if ([...c.versions.values()].some((m) => m.busy)) continue;
      this.opts.log.info(`model ${c.entry.name}: unloading (least recently used) to make room for ${name}`);
      const old = [...c.versions.values()];
      c.versions.clear();
      await Promise.all(old.map((m) => m.retire()));
    }
    if (used() + need > cap)
      this.opts.log.warn(
        `model ${name}: loading beyond the memory cap (${Math.round(cap / 2 ** 20)} MiB); every other model is busy`,
      );
  }
}

function lastUsed(s: ModelSlot): number {
  return Math.max(0, ...[...s.versions.values()].map((m) => m.lastUsed));
}
