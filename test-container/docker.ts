/**
 * The Docker side of the container test: install Docker when it is missing (CI: root on a clean Debian 12),
 * start a daemon when none answers (and stop only the one started here), build the base image stand-in and the
 * image, run commands. Every container and build uses the host network (`--network host`): these machines have
 * no bridge network (dockerd runs with --bridge=none) and every connection stays on this machine's loopback.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

const asRun = (r: SpawnSyncReturns<string>): Run => ({
  status: r.status,
  stdout: r.stdout ?? '',
  stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
});

/** The classic builder is the only one without the buildx plugin (Debian's docker.io 20.10). */
const DOCKER_ENV = { ...process.env, DOCKER_BUILDKIT: '0' };

export function docker(args: string[], timeoutMs = 120_000): Run {
  return asRun(
    spawnSync('docker', args, { encoding: 'utf8', env: DOCKER_ENV, timeout: timeoutMs, maxBuffer: 64 << 20 }),
  );
}

/** Runs `docker ...` and returns stdout; throws with stderr on failure. */
export function dockerOk(args: string[], timeoutMs = 120_000): string {
  const r = docker(args, timeoutMs);
  if (r.status !== 0)
    throw new Error(`docker ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-4000)}`);
  return r.stdout.trim();
}

const has = (cmd: string) => spawnSync('sh', ['-c', 'command -v "$0"', cmd]).status === 0;

/**
 * Installs Debian's docker.io (dockerd, containerd, runc) and debootstrap (for scripts/docker-base.sh) with
 * apt-get when either is missing. Needs root; elsewhere it says what to install.
 */
export function ensureDockerInstalled(log: (line: string) => void): void {
  const missing = ['docker', 'dockerd', 'debootstrap'].filter((c) => !has(c));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !has('apt-get'))
    throw new Error(`missing ${missing.join(', ')}: install docker.io and debootstrap (apt-get, as root)`);
  log(`installing docker.io and debootstrap with apt-get (missing: ${missing.join(', ')})`);
  const r = spawnSync(
    'sh',
    ['-c', 'apt-get update -qq && apt-get install -y -qq docker.io debootstrap >/dev/null'],
    { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 900_000 },
  );
  if (r.status !== 0) throw new Error(`apt-get install docker.io debootstrap failed: ${r.stderr}`);
}

export interface Daemon {
  /** Stops the daemon when this process started it; a daemon that was already running is left alone. */
  stop(): Promise<void>;
  started: boolean;
}

/** Uses the daemon that answers `docker info`, or starts dockerd without a bridge network and waits for it. */
export async function ensureDaemon(log: (line: string) => void): Promise<Daemon> {
  if (docker(['info'], 30_000).status === 0) return { started: false, stop: async () => undefined };
  const logFile = join(tmpdir(), `padserve-dockerd-${process.pid}.log`);
  const fd = openSync(logFile, 'w');
  const child: ChildProcess = spawn('dockerd', ['--bridge=none', '--iptables=false', '--ip-masq=false'], {
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const end = Date.now() + 120_000;
  while (docker(['info'], 10_000).status !== 0) {
    if (exited || Date.now() > end) {
      child.kill('SIGTERM');
      throw new Error(`dockerd did not start: ${readFileSync(logFile, 'utf8').slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  log(`started dockerd (pid ${child.pid}, log ${logFile})`);
  return {
    started: true,
    stop: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      await Promise.race([exit, new Promise((r) => setTimeout(r, 60_000))]);
      if (!exited) child.kill('SIGKILL');
    },
  };
}

/**
 * Build arguments that let `npm ci` inside the build reach the registry the way this host does: the proxy
 * variables when set, and the host npm's CA file (scripts/docker-base.sh copies it into the stand-in base
 * image at the same path) as NODE_EXTRA_CA_CERTS.
 */
export function registryBuildArgs(): string[] {
  const args: string[] = [];
  for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'])
    if (process.env[k]) args.push('--build-arg', `${k}=${process.env[k]}`);
  const cafile = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' }).stdout?.trim();
  if (cafile && cafile !== 'null' && cafile !== 'undefined' && existsSync(cafile))
    args.push('--build-arg', `NODE_EXTRA_CA_CERTS=${cafile}`);
  return args;
}

/** Runs a command to completion, streaming nothing; resolves with its output (for the long build steps). */
export function runAsync(cmd: string, args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: DOCKER_ENV });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
