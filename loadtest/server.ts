/**
 * The server under test: either one already running (`--url`, loopback only) or a child process started here
 * (`node bin/padserve.js serve --port <free port> --model-repository <dir>`), waited for on `/v2/health/ready`.
 * For a child, CPU and RSS come from /proc/<pid>/stat; otherwise from its Prometheus process metrics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { PADSERVE_BIN, REPO_ROOT } from './paths.js';
import { LoadtestError, loopbackUrl } from './url.js';

export interface ServerTarget {
  baseUrl: string;
  /** The server's pid when this process started it (CPU and RSS then come from /proc). */
  pid: number | null;
  /** Where the child's output went. */
  logFile: string | null;
  stop(): Promise<void>;
}

export function connectTarget(url: string): ServerTarget {
  return { baseUrl: loopbackUrl(url), pid: null, logFile: null, stop: async () => undefined };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const CLK_TCK = 100;
const PAGE = 4096;

function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: split after the last ')'. fields[0] is field 3 (state).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of a process (s), from /proc/<pid>/stat; null when unreadable (not Linux, process gone). */
export function procCpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : null;
}

export function procRssMb(pid: number): number | null {
  const f = statFields(pid);
  return f ? (Number(f[21]) * PAGE) / 2 ** 20 : null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `/v2/health/ready` until 200; fails early when `exited()` says the child is gone. */
export async function waitReady(
  baseUrl: string,
  timeoutS: number,
  exited: () => string | null = () => null,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const gone = exited();
    if (gone) throw new LoadtestError(`server exited before it was ready (${gone})`);
    try {
      const res = await fetch(new URL('/v2/health/ready', baseUrl), { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return (performance.now() - t0) / 1000;
    } catch {
      // not listening yet
    }
    if ((performance.now() - t0) / 1000 > timeoutS)
      throw new LoadtestError(`server at ${baseUrl} not ready after ${timeoutS} s`);
    await sleep(250);
  }
}

export interface StartOptions {
  repository: string;
  /** Extra `padserve serve` flags (e.g. --workers 1, --no-build-default-models). */
  args?: readonly string[];
  logFile: string;
  readyTimeoutS?: number;
  env?: NodeJS.ProcessEnv;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Starts `padserve serve` on a free loopback port and waits until it is ready. */
export async function startServer(opts: StartOptions): Promise<ServerTarget & { readyS: number }> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const log = createWriteStream(opts.logFile);
  const args = [
    PADSERVE_BIN,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--model-repository',
    opts.repository,
    ...(opts.args ?? []),
  ];
  log.write(`$ node ${args.join(' ')}\n`);
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let exitInfo: string | null = null;
  child.on('exit', (code, signal) => (exitInfo = `exit code ${code ?? '-'}, signal ${signal ?? '-'}`));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, 15_000))) {
        child.kill('SIGKILL');
        await waitExit(child, 5000);
      }
    }
    log.end();
  };
  try {
    const readyS = await waitReady(baseUrl, opts.readyTimeoutS ?? 600, () => exitInfo);
    return { baseUrl, pid: child.pid ?? null, logFile: opts.logFile, stop, readyS };
  } catch (err) {
    await stop();
    throw new LoadtestError(
      `${(err as Error).message}\n--- ${opts.logFile} (last lines) ---\n${tail(opts.logFile)}`,
    );
  }
}

/** Stops the server when the load test is interrupted (Ctrl-C), so no child outlives it. */
export function stopOnSignal(target: ServerTarget): () => void {
  const handler = () => {
    void target.stop().then(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
