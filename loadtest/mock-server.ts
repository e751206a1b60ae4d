/**
 * A stand-in server for testing the *load generator* (not padserve): fastify answering the routes the load tests
 * use (`POST /classify` multipart or raw image, `POST /glue/:task`, `/v2/health/ready`, `/metrics`) after a
 * simulated batched inference (requests wait up to `delayMs` to form a batch of at most `maxBatch`, a batch takes
 * `baseMs + perRowMs × rows`, one batch at a time), with a bounded queue answered by 429. Its `/metrics` uses
 * padserve's metric names so that the histogram diffing is exercised end to end.
 */
import Fastify, { type FastifyInstance } from 'fastify';

export interface MockOptions {
  maxBatch?: number;
  baseMs?: number;
  perRowMs?: number;
  delayMs?: number;
  maxQueue?: number;
  /** Called with every /classify body as received (tests check binary bodies arrive intact). */
  onBody?: (body: Buffer) => void;
}

interface Pending {
  model: string;
  resolve: () => void;
}

class MockBatcher {
  private queue: Pending[] = [];
  private busy = false;
  readonly batchSizes: number[] = [];
  readonly outcomes = new Map<string, number>();

  constructor(private readonly o: Required<MockOptions>) {}

  submit(model: string): Promise<void> | null {
    if (this.queue.length >= this.o.maxQueue) return null;
    return new Promise((resolve) => {
      this.queue.push({ model, resolve });
      if (!this.busy)
        setTimeout(() => this.drain(), this.queue.length >= this.o.maxBatch ? 0 : this.o.delayMs);
    });
  }

  private drain(): void {
    if (this.busy || !this.queue.length) return;
    this.busy = true;
    const batch = this.queue.splice(0, this.o.maxBatch);
    this.batchSizes.push(batch.length);
    setTimeout(
      () => {
        for (const p of batch) p.resolve();
        this.busy = false;
        this.drain();
      },
      this.o.baseMs + this.o.perRowMs * batch.length,
    );
  }

  count(outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }
}

function metricsText(b: MockBatcher): string {
  const lines = [
    '# HELP padserve_batch_size Rows per executed batch',
    '# TYPE padserve_batch_size histogram',
  ];
  const bounds = [1, 2, 4, 8, 16, 32];
  for (const le of bounds)
    lines.push(
      `padserve_batch_size_bucket{le="${le}",model="mock"} ${b.batchSizes.filter((s) => s <= le).length}`,
    );
  lines.push(`padserve_batch_size_bucket{le="+Inf",model="mock"} ${b.batchSizes.length}`);
  lines.push(`padserve_batch_size_sum{model="mock"} ${b.batchSizes.reduce((a, x) => a + x, 0)}`);
  lines.push(`padserve_batch_size_count{model="mock"} ${b.batchSizes.length}`);
  for (const [outcome, n] of b.outcomes)
    lines.push(`padserve_requests_total{route="mock",model="mock",outcome="${outcome}"} ${n}`);
  const cpu = process.cpuUsage();
  lines.push(`process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}`);
  lines.push(`process_resident_memory_bytes ${process.memoryUsage.rss()}`);
  return `${lines.join('\n')}\n`;
}

export async function startMockServer(
  opts: MockOptions = {},
): Promise<{ app: FastifyInstance; url: string; batcher: MockBatcher }> {
  const o: Required<MockOptions> = {
    maxBatch: 8,
    baseMs: 4,
    perRowMs: 1,
    delayMs: 2,
    maxQueue: 64,
    onBody: () => undefined,
    ...opts,
  };
  const batcher = new MockBatcher(o);
  const app = Fastify({ logger: false, bodyLimit: 32 * 1024 * 1024 });
  app.addContentTypeParser(/^multipart\/form-data/, { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser(/^image\//, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const infer = async (
    reply: { code(n: number): unknown; header(k: string, v: string): unknown },
    model: string,
  ) => {
    const done = batcher.submit(model);
    if (!done) {
      batcher.count('rejected');
      reply.code(429);
      reply.header('retry-after', '1');
      return { error: 'queue full', code: 'queue_full' };
    }
    await done;
    batcher.count('ok');
    return null;
  };
  app.post('/classify', async (req, reply) => {
    const body = req.body as Buffer;
    if (!Buffer.isBuffer(body) || body.length === 0) return reply.code(400).send({ error: 'no image' });
    o.onBody(body);
    return (
      (await infer(reply, 'mock')) ?? {
        model: 'mock',
        version: '1',
        predictions: [{ label: 'x', index: 0, score: 1 }],
        bytes: body.length,
      }
    );
  });
  app.post<{ Params: { task: string } }>('/glue/:task', async (req, reply) => {
    const body = req.body as Record<string, unknown>;
    if (typeof body?.sentence !== 'string' && typeof body?.sentence1 !== 'string')
      return reply.code(400).send({ error: 'no sentence' });
    return (await infer(reply, 'mock')) ?? { model: 'mock', task: req.params.task, label: 'entailment' };
  });
  app.get('/v2/health/ready', async () => ({ ready: true }));
  app.get('/metrics', async (_req, reply) =>
    reply.type('text/plain; version=0.0.4').send(metricsText(batcher)),
  );
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url, batcher };
}
