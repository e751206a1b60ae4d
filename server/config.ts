/**
 * Every server setting in one typed table: name, CLI flag, environment variable, default, description. The CLI
 * parser, the `--help` text and docs/settings.md (test/unit/server-config.test.ts keeps it in sync; regenerate with
 * `UPDATE_SETTINGS_DOC=1 npx vitest run test/unit/server-config.test.ts`) all come from this table.
 * Precedence: command line, then environment, then default.
 */
import { parseArgs } from 'node:util';

type Kind = 'string' | 'int' | 'bool' | 'ints' | { enum: readonly string[] };

interface Setting<K extends Kind = Kind> {
  flag: string;
  env: string;
  kind: K;
  default: ValueOf<K>;
  doc: string;
  group: string;
  /** Not printed (secrets). */
  secret?: boolean;
}

type ValueOf<K> = K extends 'int'
  ? number
  : K extends 'bool'
    ? boolean
    : K extends 'ints'
      ? number[]
      : K extends { enum: readonly (infer E)[] }
        ? E
        : string;

const s = <const K extends Kind>(x: Setting<K>): Setting<K> => x;

export const SETTINGS = {
  host: s({
    group: 'Network',
    flag: 'host',
    env: 'PADSERVE_HOST',
    kind: 'string',
    default: '127.0.0.1',
    doc: 'Address to listen on. Loopback by default so that a development machine does not expose unauthenticated inference; the container image sets 0.0.0.0 (a container is reached through its published port).',
  }),
  port: s({
    group: 'Network',
    flag: 'port',
    env: 'PADSERVE_PORT',
    kind: 'int',
    default: 8080,
    doc: 'TCP port (0 = any free port; the chosen one is logged).',
  }),
  grpc: s({
    group: 'Network',
    flag: 'grpc',
    env: 'PADSERVE_GRPC',
    kind: 'bool',
    default: false,
    doc: 'Also serve the KServe / Triton V2 gRPC protocol (`inference.GRPCInferenceService`, src/grpc/proto/grpc_service.proto) on `--grpc-port`, bound to `--host`, with the same models, batcher, limits, tokens and metrics as HTTP (docs/compatibility.md). Off by default so that a second port is opened only on request.',
  }),
  grpcPort: s({
    group: 'Network',
    flag: 'grpc-port',
    env: 'PADSERVE_GRPC_PORT',
    kind: 'int',
    default: 8081,
    doc: 'TCP port of the gRPC listener when `--grpc` is on (8081 as KServe uses; 0 = any free port, the chosen one is logged).',
  }),
  modelRepository: s({
    group: 'Models',
    flag: 'model-repository',
    env: 'PADSERVE_MODEL_REPOSITORY',
    kind: 'string',
    default: 'models',
    doc: 'Model repository folder: `<name>/serving.json` + `<name>/<version>/` model folders.',
  }),
  buildDefaultModels: s({
    group: 'Models',
    flag: 'build-default-models',
    env: 'PADSERVE_BUILD_DEFAULT_MODELS',
    kind: 'bool',
    default: true,
    doc: 'On start, build the default models that are missing from the repository (synthetic PAD-Net ResNet-50 `resnet50-pad` and PAD-Net BERT for the nine GLUE tasks), with a progress display.',
  }),
  loadPolicy: s({
    group: 'Models',
    flag: 'load-policy',
    env: 'PADSERVE_LOAD_POLICY',
    kind: { enum: ['all', 'lazy'] },
    default: 'all',
    doc: '`all`: load and warm every model before reporting ready. `lazy`: load a model on its first request (that request waits).',
  }),
  modelMemoryCapMb: s({
    group: 'Models',
    flag: 'model-memory-cap-mb',
    env: 'PADSERVE_MODEL_MEMORY_CAP_MB',
    kind: 'int',
    default: 0,
    doc: 'With `--load-policy lazy`: unload least recently used idle models to keep the estimated model memory under this many MiB (0 = no cap).',
  }),
  defaultImageModel: s({
    group: 'Models',
    flag: 'default-image-model',
    env: 'PADSERVE_DEFAULT_IMAGE_MODEL',
    kind: 'string',
    default: 'resnet50-pad',
    doc: 'Model used by `POST /classify` without `model` (falls back to the first image model in the repository).',
  }),
  workers: s({
    group: 'Workers',
    flag: 'workers',
    env: 'PADSERVE_WORKERS',
    kind: 'int',
    default: 1,
    doc: 'Inference worker threads. Each model instance lives in exactly one worker (weights are held once per process); more workers let different models run at the same time.',
  }),
  preprocessWorkers: s({
    group: 'Workers',
    flag: 'preprocess-workers',
    env: 'PADSERVE_PREPROCESS_WORKERS',
    kind: 'int',
    default: 0,
    doc: 'Image preprocessing worker threads (decode, resize, normalise); 0 = same as `--workers`.',
  }),
  intraOpThreads: s({
    group: 'Workers',
    flag: 'intra-op-threads',
    env: 'PADSERVE_INTRA_OP_THREADS',
    kind: 'int',
    default: 0,
    doc: 'onnxruntime intra-op threads per model instance; 0 = cores / workers (at least 1), so that workers × threads ≤ cores.',
  }),
  device: s({
    group: 'Workers',
    flag: 'device',
    env: 'PADSERVE_DEVICE',
    kind: { enum: ['cpu', 'cuda'] },
    default: 'cpu',
    doc: 'Execution provider. `cuda` is tried per model; when unavailable one line is logged and the model runs on the CPU.',
  }),
  placementCheck: s({
    group: 'Workers',
    flag: 'placement-check',
    env: 'PADSERVE_PLACEMENT_CHECK',
    kind: { enum: ['cuda', 'always', 'off'] },
    default: 'cuda',
    doc: 'At load, profile one probe run to count the nodes each execution provider got (logged, a warning when most fell back to the CPU; V2 metadata `placement`). `cuda`: on CUDA sessions; `always`: on the CPU too. Costs a second session load and a run (docs/cuda.md).',
  }),
  workerRunTimeoutMs: s({
    group: 'Workers',
    flag: 'worker-run-timeout-ms',
    env: 'PADSERVE_WORKER_RUN_TIMEOUT_MS',
    kind: 'int',
    default: 120_000,
    doc: 'A batch running longer than this marks its worker as hung: it is replaced and the batch fails with 503 `worker_failed`.',
  }),
  inlineTokenizeMaxChars: s({
    group: 'Workers',
    flag: 'inline-tokenize-max-chars',
    env: 'PADSERVE_INLINE_TOKENIZE_MAX_CHARS',
    kind: 'int',
    default: 2048,
    doc: 'Text requests up to this many characters are tokenised on the HTTP thread (≈0.1–0.6 ms per pair, cheaper than a worker round trip); longer ones in the preprocessing pool.',
  }),
  maxBatchSize: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'max-batch-size',
    env: 'PADSERVE_MAX_BATCH_SIZE',
    kind: 'int',
    default: 8,
    doc: 'Rows per batch.',
  }),
  maxQueueDelayMs: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'max-queue-delay-ms',
    env: 'PADSERVE_MAX_QUEUE_DELAY_MS',
    kind: 'int',
    default: 2,
    doc: 'How long a batch that is not full may wait for more requests while an instance is free (0 = dispatch at once; batches still form while the instance is busy).',
  }),
  maxQueueSize: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'max-queue-size',
    env: 'PADSERVE_MAX_QUEUE_SIZE',
    kind: 'int',
    default: 64,
    doc: 'Rows waiting per model; beyond it requests are refused at once with 429 and `Retry-After`.',
  }),
  maxBatchTokens: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'max-batch-tokens',
    env: 'PADSERVE_MAX_BATCH_TOKENS',
    kind: 'int',
    default: 4096,
    doc: 'Text models: padded tokens per batch (bucket length × rows).',
  }),
  lengthBuckets: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'length-buckets',
    env: 'PADSERVE_LENGTH_BUCKETS',
    kind: 'ints',
    default: [16, 32, 64, 128],
    doc: 'Text models: sequence lengths batches are padded to (comma-separated; the model maximum is always the last).',
  }),
  instances: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'instances',
    env: 'PADSERVE_INSTANCES',
    kind: 'int',
    default: 1,
    doc: 'Sessions per model (each holds its own copy of the weights).',
  }),
  warmup: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'warmup',
    env: 'PADSERVE_WARMUP',
    kind: { enum: ['all', 'powers-of-two', 'buckets', 'none'] },
    default: 'all',
    doc: 'Batch shapes run once per instance before a model is ready: every shape the batcher can form (graph shapes: a graph that runs per sample has one), powers of two (and the maximum), one row per length bucket, or none.',
  }),
  weights: s({
    group: 'Batching (defaults for serving.json)',
    flag: 'weights',
    env: 'PADSERVE_WEIGHTS',
    kind: { enum: ['auto', 'shared', 'private'] },
    default: 'auto',
    doc: '`shared`: external weights are memory-mapped (no prepacking), one copy for every session over the same file; `private`: each session holds a prepacked copy (faster MatMul/Conv); `auto`: shared when the weights file is used by more than one session (instances > 1, hard links such as the GLUE suite, several models linking one folder).',
  }),
  requestTimeoutMs: s({
    group: 'Limits',
    flag: 'request-timeout-ms',
    env: 'PADSERVE_REQUEST_TIMEOUT_MS',
    kind: 'int',
    default: 30_000,
    doc: 'Default deadline of an inference request; a client may shorten it with the `x-deadline-ms` header, never lengthen it. Requests still queued at their deadline get 504 `deadline_exceeded`.',
  }),
  maxBodyBytes: s({
    group: 'Limits',
    flag: 'max-body-bytes',
    env: 'PADSERVE_MAX_BODY_BYTES',
    kind: 'int',
    default: 16 * 1024 * 1024,
    doc: 'Largest request body (image upload, JSON, V2 binary tensors); larger ones get 413.',
  }),
  maxImagePixels: s({
    group: 'Limits',
    flag: 'max-image-pixels',
    env: 'PADSERVE_MAX_IMAGE_PIXELS',
    kind: 'int',
    default: 40_000_000,
    doc: 'Largest width × height of an uploaded image, checked from its header before decoding (decompression bombs); larger ones get 413.',
  }),
  maxTextChars: s({
    group: 'Limits',
    flag: 'max-text-chars',
    env: 'PADSERVE_MAX_TEXT_CHARS',
    kind: 'int',
    default: 10_000,
    doc: 'Longest text field (characters) before tokenisation; longer ones get 413. Token sequences are truncated to the model maximum.',
  }),
  maxPairsPerRequest: s({
    group: 'Limits',
    flag: 'max-pairs-per-request',
    env: 'PADSERVE_MAX_PAIRS_PER_REQUEST',
    kind: 'int',
    default: 64,
    doc: 'Items in one `POST /glue/:task` `pairs` list or one V2 request batch.',
  }),
  maxPreprocessQueue: s({
    group: 'Limits',
    flag: 'max-preprocess-queue',
    env: 'PADSERVE_MAX_PREPROCESS_QUEUE',
    kind: 'int',
    default: 64,
    doc: 'Images waiting for a preprocessing worker (all models together); beyond it requests are refused at once with 429 `queue_full` and `Retry-After` instead of piling up until their deadline.',
  }),
  receiveTimeoutMs: s({
    group: 'Limits',
    flag: 'receive-timeout-ms',
    env: 'PADSERVE_RECEIVE_TIMEOUT_MS',
    kind: 'int',
    default: 30_000,
    doc: 'Longest time a client may take to send a whole request (headers and body): a client that trickles its upload is answered 408 and disconnected (checked about once a second). 0 = no limit (not recommended).',
  }),
  maxConnections: s({
    group: 'Limits',
    flag: 'max-connections',
    env: 'PADSERVE_MAX_CONNECTIONS',
    kind: 'int',
    default: 1024,
    doc: 'Open TCP connections the server serves normally. A connection beyond it is still answered, never reset: its inference requests get 429 `too_many_connections` with `Retry-After` and the connection is closed after each answer (health and metrics answer as usual, so probes do not fail under a pile-up). 0 = no limit.',
  }),
  listenBacklog: s({
    group: 'Limits',
    flag: 'listen-backlog',
    env: 'PADSERVE_LISTEN_BACKLOG',
    kind: 'int',
    default: 4096,
    doc: "Connections the kernel holds until the server accepts them (`listen()` backlog; Linux caps it at `net.core.somaxconn`, 4096 by default). Node's own default of 511 overflows when a burst of clients connects while the event loop is busy, and the kernel then resets some of those connections (test/e2e/server-overload-answers.test.ts).",
  }),
  retryAfterS: s({
    group: 'Limits',
    flag: 'retry-after-s',
    env: 'PADSERVE_RETRY_AFTER_S',
    kind: 'int',
    default: 1,
    doc: 'Seconds in the `Retry-After` header of 429 answers and of the 503s that clear in about a second (draining, a crashed or hung worker, a version unloaded while the request waited).',
  }),
  loadingRetryAfterS: s({
    group: 'Limits',
    flag: 'loading-retry-after-s',
    env: 'PADSERVE_LOADING_RETRY_AFTER_S',
    kind: 'int',
    default: 2,
    doc: 'Seconds in the `Retry-After` header of the 503 for a model that is loading or not loaded (a load and warm-up take seconds).',
  }),
  shutdownGraceMs: s({
    group: 'Lifecycle',
    flag: 'shutdown-grace-ms',
    env: 'PADSERVE_SHUTDOWN_GRACE_MS',
    kind: 'int',
    default: 30_000,
    doc: 'On SIGTERM/SIGINT: readiness turns false, new requests get 503, in-flight ones may finish for this long; then the process exits (0 when everything finished).',
  }),
  adminToken: s({
    group: 'Access',
    flag: 'admin-token',
    env: 'PADSERVE_ADMIN_TOKEN',
    kind: 'string',
    default: '',
    secret: true,
    doc: 'Enables `/admin/models/:name/load|unload|reload` with `Authorization: Bearer <token>`. Empty = admin API off.',
  }),
  apiToken: s({
    group: 'Access',
    flag: 'api-token',
    env: 'PADSERVE_API_TOKEN',
    kind: 'string',
    default: '',
    secret: true,
    doc: 'When set, inference routes (`/classify`, `/glue/:task`, V2 `infer`) need `Authorization: Bearer <token>` (401 otherwise; compared in constant time). Health, metadata and metrics stay open. Empty = no token needed.',
  }),
  logLevel: s({
    group: 'Logging',
    flag: 'log-level',
    env: 'PADSERVE_LOG_LEVEL',
    kind: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    default: 'info',
    doc: 'Structured (JSON) log level; every request line carries its request id.',
  }),
  telemetrySampleEvery: s({
    group: 'Telemetry',
    flag: 'telemetry-sample-every',
    env: 'PADSERVE_TELEMETRY_SAMPLE_EVERY',
    kind: 'int',
    default: 16,
    doc: "Every Nth batch of a model version (warmup excluded) also fetches the graph's telemetry output (PAD conv router π / PAD-MoE expert token counts) for `padserve_router_entropy` and `padserve_expert_load` in `/metrics`; other batches compute nothing extra. 0 = off.",
  }),
} as const;

export type SettingName = keyof typeof SETTINGS;
export type ServerConfig = { -readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]['kind']> };

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly userFacing = true;
}

function convert(name: SettingName, raw: string, source: string): ServerConfig[SettingName] {
  const def = SETTINGS[name] as Setting;
  const where = `${source} (${name})`;
  const kind = def.kind;
  if (kind === 'string') return raw;
  if (kind === 'int') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isInteger(n) || n < 0)
      throw new ConfigError(`${where}: expected an integer ≥ 0, got "${raw}"`);
    return n;
  }
  if (kind === 'bool') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`${where}: expected true or false, got "${raw}"`);
  }
  if (kind === 'ints') {
    const parts = raw.split(',').map((x) => Number(x.trim()));
    if (!parts.length || parts.some((n) => !Number.isInteger(n) || n < 1))
      throw new ConfigError(`${where}: expected comma-separated positive integers, got "${raw}"`);
    return parts;
  }
  if (!kind.enum.includes(raw))
    throw new ConfigError(`${where}: expected one of ${kind.enum.join(', ')}, got "${raw}"`);
  return raw;
}

/** Builds the configuration from argv (flags), env and defaults. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const def of Object.values(SETTINGS) as Setting[]) {
    if (def.kind === 'bool') {
      options[def.flag] = { type: 'boolean' };
      options[`no-${def.flag}`] = { type: 'boolean' };
    } else options[def.flag] = { type: 'string' };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as typeof values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${usage()}`);
  }
  if (values.help) {
    console.log(usage());
    process.exit(0);
  }
  const cfg = {} as Record<SettingName, unknown>;
  for (const [name, def] of Object.entries(SETTINGS) as [SettingName, Setting][]) {
    const cli = values[def.flag];
    if (def.kind === 'bool' && (cli !== undefined || values[`no-${def.flag}`] !== undefined)) {
      cfg[name] = values[`no-${def.flag}`] ? false : true;
    } else if (typeof cli === 'string') cfg[name] = convert(name, cli, `--${def.flag}`);
    else if (env[def.env] !== undefined && env[def.env] !== '')
      cfg[name] = convert(name, env[def.env]!, def.env);
    else cfg[name] = Array.isArray(def.default) ? [...def.default] : def.default;
  }
  const c = cfg as ServerConfig;
  if (c.workers < 1) throw new ConfigError('--workers must be ≥ 1');
  if (c.maxBatchSize < 1 || c.maxQueueSize < 1 || c.instances < 1 || c.maxPreprocessQueue < 1)
    throw new ConfigError(
      '--max-batch-size, --max-queue-size, --max-preprocess-queue and --instances must be ≥ 1',
    );
  if (c.port > 65535) throw new ConfigError(`--port ${c.port} is not a TCP port`);
  if (c.grpcPort > 65535) throw new ConfigError(`--grpc-port ${c.grpcPort} is not a TCP port`);
  if (c.requestTimeoutMs < 1 || c.maxBodyBytes < 1 || c.maxImagePixels < 1)
    throw new ConfigError('limits must be ≥ 1');
  return c;
}

export function defaultConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return { ...loadConfig([], {}), ...overrides };
}

function shown(def: Setting): string {
  if (def.secret) return '(unset)';
  if (Array.isArray(def.default)) return def.default.join(',');
  if (def.default === '') return '(empty)';
  return String(def.default);
}

function kindText(def: Setting): string {
  if (typeof def.kind === 'object') return def.kind.enum.join(' \\| ');
  return { string: 'string', int: 'integer', bool: 'true/false', ints: 'integers' }[def.kind];
}

export function usage(): string {
  const lines = ['usage: padserve serve [options]', ''];
  let group = '';
  for (const def of Object.values(SETTINGS) as Setting[]) {
    if (def.group !== group) lines.push(`${(group = def.group)}:`);
    const flag =
      def.kind === 'bool' ? `--[no-]${def.flag}` : `--${def.flag} <${kindText(def).replace(/ \\\| /g, '|')}>`;
    lines.push(`  ${flag.padEnd(44)} ${def.env}, default ${shown(def)}`);
  }
  lines.push('', 'Settings: docs/settings.md');
  return lines.join('\n');
}

/** docs/settings.md, generated from the table. */
export function renderSettingsMarkdown(): string {
  const out = [
    '# padserve settings',
    '',
    '<!-- Generated from server/config.ts by test/unit/server-config.test.ts (UPDATE_SETTINGS_DOC=1 to rewrite). Do not edit. -->',
    '',
    'Every setting of `padserve serve` (`npm start`) has a command-line flag, an environment variable and a default.',
    'A flag wins over the variable, the variable over the default. Per-model batching settings in',
    '`models/<name>/serving.json` win over the batching defaults below (see docs/server.md).',
  ];
  let group = '';
  for (const def of Object.values(SETTINGS) as Setting[]) {
    if (def.group !== group) {
      group = def.group;
      out.push(
        '',
        `## ${group}`,
        '',
        '| flag | environment | type | default | description |',
        '|---|---|---|---|---|',
      );
    }
    const flag = def.kind === 'bool' ? `\`--${def.flag}\` / \`--no-${def.flag}\`` : `\`--${def.flag}\``;
    out.push(`| ${flag} | \`${def.env}\` | ${kindText(def)} | \`${shown(def)}\` | ${def.doc} |`);
  }
  return `${out.join('\n')}\n`;
}
