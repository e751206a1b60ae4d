/**
 * Overload is answered, never reset: every request that reached the server gets an HTTP status (200, 429 with
 * `Retry-After`, 503 or 504). Two ways a client used to see `ECONNRESET` instead, each made to happen on purpose
 * on loopback with the real server and the tiny fixture models:
 * - A burst of new connections while the server's event loop is starved (a slow machine): with Node's
 *   default listen backlog (511) the kernel's accept queue overflows, and the handshakes it dropped are reset a
 *   few seconds later. `--listen-backlog` (default 4096) holds the burst until the loop accepts it.
 * - More open connections than `--max-connections`: Node's own `server.maxConnections` destroys the extra
 *   sockets. padserve answers inference requests on them with 429 `too_many_connections` and closes them.
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureRepository, startTestServer, type FixtureRepo, type TestServer } from '../support/server.js';
import { REPO_ROOT } from '../support/paths.js';
import { scaledMs } from '../support/time-limits.js';

let repo: FixtureRepo;
beforeAll(async () => {
  repo = await fixtureRepository();
});
afterAll(() => repo?.cleanup());

const PAIR = JSON.stringify({
  premise: 'a man plays a guitar on a stage',
  hypothesis: 'a person makes music',
});
const ANSWERS = new Set([200, 429, 503, 504]);

type Outcome = { status: number; retryAfter: string | null } | { error: string };

function tally(outcomes: Outcome[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const o of outcomes) {
    const k = 'status' in o ? String(o.status) : o.error;
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

function expectAnswered(outcomes: Outcome[]): void {
  const bad = outcomes.filter((o) => !('status' in o) || !ANSWERS.has(o.status));
  expect(bad, JSON.stringify(tally(outcomes))).toEqual([]);
  const noRetryAfter = outcomes.filter((o) => 'status' in o && o.status === 429 && !o.retryAfter);
  expect(noRetryAfter).toEqual([]);
}

/**
 * Starves this process's event loop (and so the in-process server's) for `forMs`: 50 ms of busy work every 10 ms
 * timer tick leaves the loop a sliver of each second, as on a machine far slower than the burst it gets.
 */
function starveEventLoop(forMs: number): Promise<void> {
  const end = performance.now() + forMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (performance.now() >= end) {
        clearInterval(timer);
        resolve();
        return;
      }
      const until = performance.now() + 50;
      while (performance.now() < until);
    }, 10);
  });
}

describe('a burst of connections while the event loop is starved', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer(repo.dir);
  });
  afterAll(async () => srv?.close());

  // 1000 connections at once (as test/e2e/server-property.test.ts makes; more than Node's default backlog of 511,
  // fewer than the default --max-connections) while the loop accepts only now and then for 8 s. With the backlog
  // at 511 this test saw 31-51 of 1000 requests reset (`nstat -az TcpExtListenOverflows TcpEstabResets` before
  // and after: thousands of overflows, one reset per failed request); with 4096, none.
  const COUNT = 1000;
  const STARVE_MS = 8_000;
  it(
    'every request is answered',
    async () => {
      const child = spawn(
        process.execPath,
        [
          join(REPO_ROOT, 'test/support/burst-client.mjs'),
          srv.url,
          String(COUNT),
          '/glue/mnli',
          PAIR,
          String(STARVE_MS + scaledMs(10_000)),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.setEncoding('utf8');
      const exited = once(child, 'exit') as Promise<[number | null]>;
      await new Promise<void>((resolve) =>
        child.stdout.on('data', (d: string) => {
          out += d;
          if (out.startsWith('ready\n')) resolve();
        }),
      );
      await starveEventLoop(STARVE_MS);
      const [code] = await exited;
      expect(code).toBe(0);
      const outcomes = JSON.parse(out.slice('ready\n'.length)) as Outcome[];
      console.log(
        `burst of ${COUNT} while the loop is starved for ${STARVE_MS} ms: ${JSON.stringify(tally(outcomes))}`,
      );
      expect(outcomes).toHaveLength(COUNT);
      expectAnswered(outcomes);
      expect(outcomes.some((o) => 'status' in o && o.status === 200)).toBe(true);
    },
    STARVE_MS + scaledMs(15_000),
  );
});

describe('more connections than --max-connections', () => {
  const CAP = 8;
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer(repo.dir, { maxConnections: CAP });
  });
  afterAll(async () => srv?.close());

  /** Opens `n` connections and waits until the server has accepted every one of them. */
  async function openConnections(n: number): Promise<Socket[]> {
    const { port } = new URL(srv.url);
    const sockets = await Promise.all(
      Array.from({ length: n }, async () => {
        const s = connect(Number(port), '127.0.0.1');
        await once(s, 'connect');
        return s;
      }),
    );
    // A server that closes connections beyond a cap never gets to n: that is the failure, not a hang.
    const closed = sockets.filter((s) => s.closed || s.destroyed);
    for (const s of sockets) s.once('close', () => closed.push(s));
    const server = srv.server.app.server;
    const giveUp = performance.now() + scaledMs(2_000);
    for (;;) {
      const open = await new Promise<number>((r, j) => server.getConnections((e, c) => (e ? j(e) : r(c))));
      if (open >= n) return sockets;
      if (closed.length || performance.now() > giveUp)
        throw new Error(
          `the server holds ${open} of ${n} connections; ${closed.length} were closed on the client`,
        );
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** One request on an already open socket. */
  function send(
    socket: Socket,
    method: string,
    path: string,
    body?: string,
  ): Promise<Outcome & { connection?: string }> {
    return new Promise((resolve) => {
      const req = request(
        {
          method,
          path,
          createConnection: () => socket,
          headers: body ? { 'content-type': 'application/json' } : {},
        },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({
              status: res.statusCode!,
              retryAfter: (res.headers['retry-after'] as string | undefined) ?? null,
              connection: res.headers.connection,
            }),
          );
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      req.end(body);
    });
  }

  it('answers inference beyond the cap with 429 + Retry-After, health with 200, and resets nothing', async () => {
    const sockets = await openConnections(2 * CAP);
    const outcomes = await Promise.all(sockets.map((s) => send(s, 'POST', '/glue/mnli', PAIR)));
    console.log(`${2 * CAP} connections, cap ${CAP}: ${JSON.stringify(tally(outcomes))}`);
    expectAnswered(outcomes);
    const refused = outcomes.filter((o) => 'status' in o && o.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(CAP);
    expect(refused.every((o) => o.connection === 'close')).toBe(true);
    // Health stays answerable on a connection over the cap (probes must not fail because clients pile up).
    const more = await openConnections(2 * CAP + 1);
    const probe = await send(more.at(-1)!, 'GET', '/v2/health/live');
    expect(probe).toMatchObject({ status: 200 });
    for (const s of [...sockets, ...more]) s.destroy();
  });
});
