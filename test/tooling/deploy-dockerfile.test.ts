/**
 * Dockerfile and Dockerfile.cuda: the static rules a build and a run cannot show. What the CPU image does when
 * built and run (the build succeeds with the classic builder from a small context, /app holds only the runtime
 * file set, uid 10001, tini as PID 1 forwarding SIGTERM, the HEALTHCHECK turning healthy on $PADSERVE_PORT, the
 * CUDA provider fallback, Dockerfile.cuda's provider step up to its download) is `npm run test:container`
 * (test-container/container.test.ts), which CI runs. The CUDA image cannot be built here (no NVIDIA base image,
 * no NuGet): its final stage must be the CPU runtime stage line for line, apart from the lines listed below.
 * hadolint is not installable offline (no Debian package; the npm wrapper downloads the binary).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { PROVIDER_LIBRARIES } from '../../src/runtime/device.js';
import { SETTINGS, byEnv, read, startupErrors } from '../support/deploy.js';

/** Instructions, one per line (continuations joined, comments and blank lines dropped), split into stages. */
function dockerfile(file: string) {
  const lines = read(file)
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .filter((l) => l && !l.startsWith('#'));
  const args = Object.fromEntries(
    lines.map((l) => /^ARG (\w+)=(\S+)$/.exec(l)).flatMap((m) => (m ? [[m[1]!, m[2]!]] : [])),
  );
  const stages: { name: string; base: string; lines: string[] }[] = [];
  for (const l of lines) {
    const from = /^FROM (\S+) AS (\S+)$/i.exec(l);
    if (from)
      stages.push({
        name: from[2]!,
        base: from[1]!.replace(/\$\{(\w+)\}/g, (_, v: string) => args[v] ?? `\${${v}}`),
        lines: [],
      });
    else stages.at(-1)?.lines.push(l);
  }
  return { text: lines.join('\n'), stages };
}
const cpu = dockerfile('Dockerfile');
const cuda = dockerfile('Dockerfile.cuda');
const all = [...cpu.stages, ...cuda.stages];
const stage = (name: string) => all.find((s) => s.name === name)!;
const lastOf = (s: { lines: string[] }, keyword: string) =>
  s.lines
    .filter((l) => l.startsWith(`${keyword} `))
    .at(-1)
    ?.slice(keyword.length + 1) ?? '';
const envOf = (s: { lines: string[] }): Record<string, string> =>
  Object.fromEntries(
    s.lines
      .filter((l) => l.startsWith('ENV '))
      .flatMap((l) => l.slice(4).split(' '))
      .map((pair) => pair.split(/=(.*)/s).slice(0, 2)),
  );
const finals = [stage('runtime'), stage('cuda')];

describe('Dockerfile and Dockerfile.cuda (static rules)', () => {
  it('stages: build + runtime in Dockerfile, the CUDA stages in Dockerfile.cuda; bases pinned to a version tag', () => {
    // The classic builder (DOCKER_BUILDKIT=0) builds every stage of a file up to the target: the CPU file holds
    // no CUDA stage, so a CPU build never pulls the NVIDIA image or reaches NuGet.
    expect(cpu.stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    expect(cuda.stages.map((s) => s.name)).toEqual(['build-cuda', 'cuda']);
    expect(stage('runtime').base).toMatch(/^node:20[.\d]*-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    expect(stage('build-cuda').base).toBe('padserve:0.1.0');
    expect(stage('cuda').base).toMatch(/^nvidia\/cuda:12\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu2[24]\.04$/);
    for (const s of all) {
      const tag = /^[^@]+:([^:/@]+)(@sha256:[0-9a-f]{64})?$/.exec(s.base)?.[1];
      expect(tag, `FROM ${s.base} (stage ${s.name})`).toBeDefined();
      expect(tag, `FROM ${s.base}`).not.toBe('latest');
    }
  });

  it('classic-builder and reproducible: no RUN --mount, npm ci then prune, no npm install/yarn/sudo/curl|sh, no ADD, no VOLUME', () => {
    for (const { text } of [cpu, cuda]) {
      expect(text).not.toMatch(/^RUN --/m);
      expect(text).not.toMatch(/\bnpm (install|i)\b|\byarn\b|\bsudo\b|\bcurl\b[^|\n]*\|\s*(ba)?sh/);
      // No VOLUME: see the Dockerfile header (an anonymous volume per run; a derived image's /models discarded).
      expect(text).not.toMatch(/^(ADD|VOLUME) /m);
    }
    expect(stage('build').lines.filter((l) => l.startsWith('RUN npm '))).toEqual([
      'RUN npm ci --ignore-scripts',
      'RUN npm run build',
      'RUN npm prune --omit=dev',
    ]);
  });

  it("Dockerfile.cuda's final stage is the CPU runtime stage but for the node binary, the device and the CMD", () => {
    const same = (lines: string[]) =>
      lines
        .filter((l) => !l.startsWith('COPY --from=build-cuda /usr/local/bin/node ') && !l.startsWith('CMD '))
        .map((l) =>
          l
            .replace('--from=build-cuda ', '--from=build ')
            .replace('PADSERVE_DEVICE=cuda', 'PADSERVE_DEVICE=cpu'),
        );
    expect(same(stage('cuda').lines)).toEqual(same(stage('runtime').lines));
    expect(stage('cuda').lines).toContain('COPY --from=build-cuda /usr/local/bin/node /usr/local/bin/node');
    expect(JSON.parse(lastOf(stage('cuda'), 'CMD'))).toEqual(['serve', '--device', 'cuda']);
  });

  it('final stages: PADSERVE_* are real settings with valid values (no secret), host 0.0.0.0, EXPOSE = port, /models owned by USER, long HEALTHCHECK start period', () => {
    for (const s of finals) {
      const env = envOf(s);
      expect(startupErrors(JSON.parse(lastOf(s, 'CMD')) as string[], env), s.name).toEqual([]);
      for (const k of Object.keys(env))
        expect(byEnv.get(k)?.secret, `${s.name}: no secret (${k}) baked into the image`).not.toBe(true);
      // The container test runs with PADSERVE_HOST=127.0.0.1 on the host network: 0.0.0.0 is only checked here.
      expect(env).toMatchObject({
        NODE_ENV: 'production',
        [SETTINGS.host.env]: '0.0.0.0',
        [SETTINGS.port.env]: String(SETTINGS.port.default),
        [SETTINGS.modelRepository.env]: '/models',
        [SETTINGS.device.env]: s.name === 'cuda' ? 'cuda' : 'cpu',
      });
      expect(lastOf(s, 'EXPOSE')).toBe(String(SETTINGS.port.default));
      // The container test mounts /models read-only; without a volume the first start builds the models here.
      const user = lastOf(s, 'USER');
      expect(user).toBe('10001:10001');
      expect(lastOf(s, 'RUN')).toMatch(new RegExp(`mkdir -p /models && chown ${user} /models`));
      // The first start builds the default models (minutes) before /v2/health/live answers steadily.
      expect(lastOf(s, 'HEALTHCHECK')).toMatch(/--start-period=\d+m /);
    }
  });

  it('the CUDA provider step: a flag onnxruntime-node reads as "download", then the files the server looks for', () => {
    const install = lastOf(stage('build-cuda'), 'RUN');
    const flag = /^ONNXRUNTIME_NODE_INSTALL=(\S+) npm rebuild onnxruntime-node\b/.exec(install)?.[1];
    expect(flag, install).toBeDefined();
    // onnxruntime-node's own parser: `true` forces the download; a value it does not handle (the "cuda12" of its
    // comments) falls through to undefined, the default. The container test's run of this step reaches the
    // download either way (the files are missing), so it cannot tell the two apart.
    const { parseInstallFlag } = createRequire(import.meta.url)(
      'onnxruntime-node/script/install-utils.js',
    ) as { parseInstallFlag: () => unknown };
    const parsed = (value: string) => {
      const before = process.env.ONNXRUNTIME_NODE_INSTALL;
      process.env.ONNXRUNTIME_NODE_INSTALL = value;
      try {
        return parseInstallFlag();
      } finally {
        if (before === undefined) delete process.env.ONNXRUNTIME_NODE_INSTALL;
        else process.env.ONNXRUNTIME_NODE_INSTALL = before;
      }
    };
    expect(parsed(flag!)).toBe(true);
    expect(parsed('cuda12')).toBeUndefined();
    // The files the build checks for are the ones the server looks for (src/runtime/device.ts).
    for (const lib of PROVIDER_LIBRARIES.cuda!)
      expect(install).toContain(`test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/${lib}`);
  });
});
