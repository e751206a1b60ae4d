// A burst of HTTP requests from its own process, for test/e2e/server-overload-answers.test.ts: prints "ready", then on
// the next turn opens `count` loopback connections at once (one POST each, no keep-alive) and prints one JSON line
// with every outcome: {status, retryAfter} for an answer, {error: code} for a reset or a give-up.
import http from 'node:http';

const [url, countArg, path, body, giveUpMsArg] = process.argv.slice(2);
const target = new URL(path, url);
if (!['127.0.0.1', '[::1]', 'localhost'].includes(target.hostname)) throw new Error(`not loopback: ${url}`);
const count = Number(countArg);
const giveUpMs = Number(giveUpMsArg);

function once() {
  return new Promise((resolve) => {
    const req = http.request(
      target,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json' }, timeout: giveUpMs },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] ?? null }),
        );
        res.on('error', (e) => resolve({ error: e.code ?? e.message }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('gave up'), { code: 'GAVE_UP' })));
    req.on('error', (e) => resolve({ error: e.code ?? e.message }));
    req.end(body);
  });
}

process.stdout.write('ready\n');
setImmediate(async () => {
  const outcomes = await Promise.all(Array.from({ length: count }, once));
  process.stdout.write(`${JSON.stringify(outcomes)}\n`);
});
