/**
 * The load-test tooling (loadtest/): scheduling, statistics, metric diffs, reports, URL checks, and two short
 * end-to-end runs. No timing assertions: these runs check that the tooling measures, not how fast anything is.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrivalSchedule, exponential, seededRandom } from '../../loadtest/random.js';
import { latencyMs } from '../../loadtest/point.js';
import { histogramDelta, overallMeanBatch, parsePrometheus, serverDelta } from '../../loadtest/prometheus.js';
import { compareReports, compareTable, newReport, reportMarkdown } from '../../loadtest/report.js';
import { escapeXml, niceTicks, throughputLatencySvg } from '../../loadtest/svg.js';
import { isLoopbackHost, LoadtestError, loopbackUrl } from '../../loadtest/url.js';
import { glueRequests } from '../../loadtest/text.js';
import { multipartBody, MULTIPART_BOUNDARY } from '../../loadtest/images.js';
import { searchRate } from '../../loadtest/rate-search.js';
import { startMockServer } from '../../loadtest/mock-server.js';
import { connectTarget, startServer, type ServerTarget } from '../../loadtest/server.js';
import { closedPoint, openDuration, openPoint, pointDuration, warmupDuration } from '../../loadtest/sweep.js';
import { classifyRequests, glueRequestSpecs, primeOrThrow } from '../../loadtest/workloads.js';
import { FIXTURES_DIR, PADSERVE_BIN, REPO_ROOT } from '../../loadtest/paths.js';
import type { Point } from '../../loadtest/types.js';
import { scaledMs } from '../support/time-limits.js';

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('open-loop arrival schedule', () => {
  it('has Poisson gaps with mean 1/rate, reproducible for a seed', () => {
    const rate = 50;
    const s = arrivalSchedule(rate, 400_000, 'poisson', 11);
    const gaps = s.slice(1).map((t, i) => t - s[i]!);
    expect(mean(gaps)).toBeGreaterThan((1000 / rate) * 0.97);
    expect(mean(gaps)).toBeLessThan((1000 / rate) * 1.03);
    // exponential: standard deviation ≈ mean
    const m = mean(gaps);
    const sd = Math.sqrt(mean(gaps.map((g) => (g - m) ** 2)));
    expect(sd / mean(gaps)).toBeGreaterThan(0.9);
    expect(sd / mean(gaps)).toBeLessThan(1.1);
    expect(arrivalSchedule(rate, 10_000, 'poisson', 11)).toEqual(s.filter((t) => t < 10_000));
    expect(arrivalSchedule(rate, 10_000, 'poisson', 12)).not.toEqual(s.filter((t) => t < 10_000));
    expect(s.every((t, i) => t >= 0 && t < 400_000 && (i === 0 || t > s[i - 1]!))).toBe(true);
  });

  it('spaces constant arrivals evenly', () => {
    expect(arrivalSchedule(4, 1000, 'constant', 1)).toEqual([0, 250, 500, 750]);
  });

  it('rejects non-positive rates and durations', () => {
    expect(() => arrivalSchedule(0, 1000, 'poisson', 1)).toThrow();
    expect(() => arrivalSchedule(5, 0, 'poisson', 1)).toThrow();
  });

  it('draws exponential samples with the requested mean', () => {
    const r = seededRandom(3);
    const xs = Array.from({ length: 50_000 }, () => exponential(r, 7));
    expect(mean(xs)).toBeGreaterThan(6.8);
    expect(mean(xs)).toBeLessThan(7.2);
    expect(xs.every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
  });
});

describe('latency percentiles', () => {
  it('uses nearest-rank percentiles', () => {
    const l = latencyMs(Array.from({ length: 100 }, (_, i) => 100 - i));
    expect(l).toEqual({ p50: 50, p90: 90, p95: 95, p99: 99, mean: 50.5, max: 100 });
    expect(latencyMs([7])).toMatchObject({ p50: 7, p99: 7, max: 7 });
    expect(Number.isNaN(latencyMs([]).p99)).toBe(true);
  });
});

const SCRAPE_A = `# HELP padserve_batch_size Rows per executed batch
# TYPE padserve_batch_size histogram
padserve_batch_size_bucket{le="1",model="m"} 2
padserve_batch_size_bucket{le="8",model="m"} 3
padserve_batch_size_bucket{le="+Inf",model="m"} 3
padserve_batch_size_sum{model="m"} 10
padserve_batch_size_count{model="m"} 3
padserve_requests_total{route="/classify",model="m",outcome="ok"} 10
padserve_padded_tokens_total{model="m"} 0
padserve_inference_rows_total{model="m"} 10
process_cpu_seconds_total 1.5
process_resident_memory_bytes 104857600
`;
const SCRAPE_B = `padserve_batch_size_bucket{le="1",model="m"} 4
padserve_batch_size_bucket{le="8",model="m"} 9
padserve_batch_size_bucket{le="+Inf",model="m"} 9
padserve_batch_size_sum{model="m"} 44
padserve_batch_size_count{model="m"} 9
padserve_batch_size_bucket{le="1",model="idle"} 1
padserve_batch_size_sum{model="idle"} 1
padserve_batch_size_count{model="idle"} 1
padserve_requests_total{route="/classify",model="m",outcome="ok"} 44
padserve_requests_total{route="/classify",model="m",outcome="rejected"} 5
padserve_padded_tokens_total{model="m"} 2176
padserve_inference_rows_total{model="m"} 44
process_cpu_seconds_total 4
process_resident_memory_bytes 209715200
`;

describe('Prometheus scrapes', () => {
  it('parses samples with labels, escapes and special values', () => {
    const s = parsePrometheus(
      '# c\nx_total{a="q\\"uote",b="2"} 3\nup 1 1700000000\ng{le="+Inf"} +Inf\nbad line\n',
    );
    expect(s).toEqual([
      { name: 'x_total', labels: { a: 'q"uote', b: '2' }, value: 3 },
      { name: 'up', labels: {}, value: 1 },
      { name: 'g', labels: { le: '+Inf' }, value: Infinity },
    ]);
  });

  it('diffs the batch-size histogram into a mean batch size', () => {
    const a = parsePrometheus(SCRAPE_A);
    const b = parsePrometheus(SCRAPE_B);
    const d = histogramDelta(a, b, 'padserve_batch_size', { model: 'm' });
    expect(d).toMatchObject({ count: 6, sum: 34 });
    expect(d.mean).toBeCloseTo(34 / 6);
    expect(d.buckets).toEqual([
      { le: 1, count: 2 },
      { le: 8, count: 6 },
      { le: Infinity, count: 6 },
    ]);
    const s = serverDelta(a, b);
    expect(s.meanBatch.m).toBeCloseTo(34 / 6);
    expect(s.meanBatch.idle).toBe(1); // a model absent before counts from zero
    expect(s.meanPaddedLength.m).toBeCloseTo(2176 / 34);
    expect(s.cpuSeconds).toBeCloseTo(2.5);
    expect(s.rssMb).toBe(200);
    expect(s.outcomes).toEqual({ ok: 34, rejected: 5 });
    expect(overallMeanBatch(s)).toBeCloseTo(35 / 7);
  });
});

function fakePoint(concurrency: number, throughput: number, p99: number): Point {
  return {
    mode: 'closed',
    concurrency,
    durationS: 1,
    offeredRps: throughput,
    throughputRps: throughput,
    requests: throughput,
    ok: throughput,
    errors: 0,
    status429: 0,
    status: { 200: throughput },
    latencyMs: { p50: p99 / 2, p90: p99, p95: p99, p99, mean: p99 / 2, max: p99 },
    meanBatch: { m: 2 },
    serverCpuPct: 150,
    serverRssMb: 300,
    clientCpuPct: 5,
  };
}

describe('reports', () => {
  it('compares two results point by point', () => {
    const a = newReport('a', 'A', {});
    const b = newReport('b', 'B', {});
    a.series.push({ label: 'classify', target: 't', points: [fakePoint(1, 10, 100), fakePoint(4, 20, 200)] });
    b.series.push({ label: 'classify', target: 't', points: [fakePoint(4, 30, 100), fakePoint(8, 40, 300)] });
    const rows = compareReports(a, b);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ label: 'classify', load: 'c=4', throughputRatio: 1.5, p99Ratio: 0.5 });
    const table = compareTable(rows, ['A', 'B']);
    expect(table).toContain('| classify | c=4 | 20.0 | 30.0 | 1.50× |');
    expect(compareTable([])).toMatch(/no points in common/);
    expect(reportMarkdown(a)).toContain('| classify | c=4 |');
  });

  it('writes a well-formed SVG holding every point', () => {
    const svg = throughputLatencySvg(
      [
        {
          label: 'on <b> & "x"',
          points: [
            { x: 10, y: 5, tag: 'c=1' },
            { x: 50, y: 9, tag: 'c=4' },
          ],
        },
        {
          label: 'off',
          points: [
            { x: 8, y: 5, tag: 'c=1' },
            { x: 9, y: 400, tag: 'c=4' },
            { x: NaN, y: 1, tag: 'bad' },
          ],
        },
      ],
      { title: 'T & t', xLabel: 'x', yLabel: 'y' },
    );
    expectWellFormedXml(svg);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg).toContain('on &lt;b&gt; &amp; &quot;x&quot;');
    expect(svg).toContain('(log)'); // 5 → 400 ms spans more than 20×
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&apos;');
    expect(niceTicks(0, 97)).toEqual([0, 20, 40, 60, 80, 100]);
  });
});

/** A small well-formedness check: balanced tags, quoted attributes, no raw `&` or `<` in text. */
function expectWellFormedXml(xml: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(xml))) {
    const text = xml.slice(last, m.index);
    expect(text).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
    last = tag.lastIndex;
    if (m[1]) expect(stack.pop()).toBe(m[2]);
    else if (!m[4]) stack.push(m[2]!);
  }
  expect(xml.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(xml.trim().startsWith('<svg')).toBe(true);
}

describe('target URLs', () => {
  it('accepts loopback addresses only', () => {
    for (const u of [
      'http://127.0.0.1:8080',
      'http://localhost:1',
      'http://[::1]:8080/x',
      'http://127.3.2.1',
      'https://api.localhost',
    ]) {
      expect(() => loopbackUrl(u)).not.toThrow();
    }
    expect(loopbackUrl('http://127.0.0.1:8080/v2?x=1')).toBe('http://127.0.0.1:8080');
    for (const u of [
      'http://10.0.0.1:8080',
      'http://example.com',
      'http://0.0.0.0:8080',
      'http://192.168.1.2',
      'http://127.0.0.1.evil.com',
      'http://user:pw@127.0.0.1',
      'ftp://127.0.0.1',
      'nonsense',
    ]) {
      expect(() => loopbackUrl(u), u).toThrow(LoadtestError);
    }
    expect(isLoopbackHost('127.999.0.1')).toBe(false);
    expect(() => connectTarget('http://8.8.8.8:80')).toThrow(/loopback/);
  });
});

describe('request bodies', () => {
  it('generates the same GLUE requests for a seed, with the task fields', () => {
    const a = glueRequests(['mnli', 'sst2'], 20, 5);
    expect(glueRequests(['mnli', 'sst2'], 20, 5)).toEqual(a);
    expect(a[0]!.task).toBe('mnli');
    expect(Object.keys(a[0]!.body).sort()).toEqual(['sentence1', 'sentence2']);
    expect(Object.keys(a[1]!.body)).toEqual(['sentence']);
    const words = a.map((r) => Object.values(r.body).join(' ').split(' ').length);
    expect(new Set(words).size).toBeGreaterThan(5);
  });

  it('wraps binary images in multipart without altering a byte', () => {
    const bytes = Buffer.from([0, 255, 13, 10, 45, 45, 128, 7]);
    const body = multipartBody({ name: 'x.jpg', contentType: 'image/jpeg', bytes, width: 1, height: 1 });
    const start = body.indexOf('\r\n\r\n') + 4;
    expect(body.subarray(start, start + bytes.length).equals(bytes)).toBe(true);
    expect(body.toString('latin1').endsWith(`\r\n--${MULTIPART_BOUNDARY}--\r\n`)).toBe(true);
  });
});

describe('point durations for slow models', () => {
  const t = { durationS: 3, warmupS: 1, minOk: 10, maxDurationS: 12 };
  it('lengthens windows and warmups to the estimated rate, within bounds', () => {
    expect(pointDuration(t, 4, undefined)).toBe(3);
    expect(pointDuration(t, 4, 100)).toBe(3); // fast server: the minimum
    expect(pointDuration(t, 4, 2)).toBe(7); // (10 answers + 4 in flight) / 2 per s
    expect(pointDuration(t, 64, 0.5)).toBe(12);
    expect(warmupDuration(t, 16, 100)).toBe(1);
    expect(warmupDuration(t, 16, 2)).toBe(8); // one pipeline round trip: 16 / 2 per s
    expect(warmupDuration(t, 16, 0.1)).toBe(12);
    expect(openDuration(t, 0.5)).toBe(12);
    expect(openDuration(t, 2)).toBe(5);
    expect(openDuration({ durationS: 3, warmupS: 0 }, 0.5)).toBe(3);
  });
});

describe('rate search', () => {
  it('brackets the highest passing rate', async () => {
    const r = await searchRate(async (rate) => rate <= 37, 5, 12);
    expect(r.rate).toBeLessThanOrEqual(37);
    expect(r.rate).toBeGreaterThan(37 / 1.1);
    expect(r.failedAt).toBeGreaterThan(37);
    const none = await searchRate(async () => false, 8, 3);
    expect(none.rate).toBe(0);
  });
});

// This exercises the load generator (autocannon wrapper, open-loop client, metric diffs) against a stand-in
// fastify server. It says nothing about padserve itself: that is the next describe block.
describe('load generator against a stand-in server (not padserve)', () => {
  let mock: Awaited<ReturnType<typeof startMockServer>>;
  const received = new Set<string>();
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  beforeAll(async () => {
    mock = await startMockServer({ onBody: (b) => received.add(sha(b)) });
  });
  afterAll(async () => mock.app.close());

  it('measures closed and open loop points with batch sizes from /metrics', async () => {
    const target = connectTarget(mock.url);
    const images = await classifyRequests();
    await primeOrThrow(target.baseUrl, images);
    const closed = await closedPoint(target, images, 4, { durationS: 0.6, warmupS: 0 });
    expect(closed.ok).toBeGreaterThan(0);
    expect(closed.errors).toBe(0);
    expect(closed.meanBatch?.mock).toBeGreaterThanOrEqual(1);
    expect(closed.serverCpuPct).not.toBeNull();
    expect(images.every((r) => received.has(sha(r.body!)))).toBe(true); // binary bodies arrived intact
    const open = await openPoint(target, glueRequestSpecs({ tasks: ['mnli', 'sst2'] }), 40, 'poisson', 0.6);
    expect(open.mode).toBe('open');
    expect(open.requests).toBeGreaterThan(5);
    expect(open.ok + open.errors).toBe(open.requests);
  });
});

const FIXTURES = join(FIXTURES_DIR, 'padnet');

// The real server with tiny converted fixture models (test/fixtures): a few seconds on an idle machine.
describe('load generator against padserve (tiny models)', () => {
  let dir: string;
  let server: ServerTarget | null = null;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'padserve-loadtest-'));
    const convert = (src: string, out: string) =>
      execFileSync(process.execPath, [PADSERVE_BIN, 'convert', src, '--out', out], {
        cwd: REPO_ROOT,
        stdio: 'pipe',
      });
    convert(join(FIXTURES, 'resnet-tiny', 'model.safetensors'), join(dir, 'tiny', '1'));
    convert(join(FIXTURES, 'bert-tiny'), join(dir, 'bert-tiny', '1'));
    writeFileSync(
      join(dir, 'tiny', 'serving.json'),
      JSON.stringify({ max_batch_size: 4, warmup: 'powers-of-two' }),
    );
    writeFileSync(
      join(dir, 'bert-tiny', 'serving.json'),
      JSON.stringify({ max_batch_size: 8, tasks: ['mnli', 'sst2'], warmup: 'powers-of-two' }),
    );
    server = await startServer({
      repository: dir,
      args: ['--no-build-default-models', '--log-level', 'warn', '--default-image-model', 'tiny'],
      logFile: join(dir, 'server.log'),
      readyTimeoutS: scaledMs(12_000) / 1000,
    });
  }, scaledMs(30_000));
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Each point first waits (up to 60 s, `settle` in loadtest/prometheus.ts) for the server to go idle: the limit
  // covers two such waits on any machine, and scales beyond that with the load.
  it(
    'drives /classify and /glue and reads batch sizes, CPU and RSS',
    async () => {
      const target = server!;
      const images = await classifyRequests();
      const glue = glueRequestSpecs({ tasks: ['mnli', 'sst2'], count: 8 });
      await primeOrThrow(target.baseUrl, images);
      await primeOrThrow(target.baseUrl, glue);
      const c = await closedPoint(target, images, 2, { durationS: 0.8, warmupS: 0 });
      expect(c.ok).toBeGreaterThan(0);
      expect(c.status['200']).toBe(c.ok);
      expect(c.meanBatch?.tiny).toBeGreaterThanOrEqual(1);
      expect(c.serverCpuPct).toBeGreaterThan(0);
      expect(c.serverRssMb).toBeGreaterThan(10);
      const g = await openPoint(target, glue, 20, 'poisson', 0.8);
      expect(g.ok).toBeGreaterThan(0);
      expect(g.meanBatch?.['bert-tiny']).toBeGreaterThanOrEqual(1);
    },
    Math.max(150_000, scaledMs(5_000)),
  );
});
