/**
 * Node placement from onnxruntime's profiler (src/runtime/placement.ts): the parser and summary on a real CPU
 * profile (every node on CPUExecutionProvider), the warning on it and on a synthetic mixed CUDA/CPU profile, and
 * the pool's load path with the check switched on (a real worker thread, real onnxruntime). No GPU here: a real
 * CUDA profile could not be recorded; the mixed profile follows the CPU profile's event layout.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCommand } from '../../src/convert/bert/command.js';
import {
  CPU_PROVIDER,
  CUDA_PROVIDER,
  parseProfile,
  placementLine,
  placementWarning,
  probeFeeds,
  summarizePlacement,
} from '../../src/runtime/placement.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { ModelSession } from '../../src/runtime/session.js';
import { PADNET_FIXTURES } from '../support/paths.js';
import { fixtureRepository, startTestServer, TEXT_MODEL } from '../support/server.js';

let tmp: string;
let modelDir: string;
let cpuProfile: unknown;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'placement-'));
  modelDir = join(tmp, 'bert');
  await convertCommand(join(PADNET_FIXTURES, 'bert-tiny'), modelDir, {});
  const profiles = join(tmp, 'profiles');
  mkdirSync(profiles);
  const session = await ModelSession.load(modelDir, {
    intraOpThreads: 1,
    profilePrefix: join(profiles, 'p'),
  });
  await session.run(probeFeeds(session.card));
  await session.release();
  const [file] = readdirSync(profiles);
  cpuProfile = JSON.parse(readFileSync(join(profiles, file!), 'utf8'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a real CPU profile', () => {
  it('gives every executed node once, all on the CPU provider', () => {
    const nodes = parseProfile(cpuProfile);
    expect(nodes.length).toBeGreaterThan(20); // a 2-layer BERT with routed experts, after onnxruntime's fusions
    expect(new Set(nodes.map((n) => n.name)).size).toBe(nodes.length);
    expect(new Set(nodes.map((n) => n.provider))).toEqual(new Set([CPU_PROVIDER]));
    expect(nodes.map((n) => n.op)).toContain('Gemm');
    expect(nodes.map((n) => n.op)).toContain('NonZero'); // the CPU form's routed experts
    const s = summarizePlacement(nodes);
    expect(s).toMatchObject({ nodes: nodes.length, providers: { [CPU_PROVIDER]: nodes.length }, copies: 0 });
    expect(placementLine(s)).toBe(`${nodes.length} nodes: ${CPU_PROVIDER} ${nodes.length}`);
    expect(placementWarning(s, 'cpu')).toBeNull();
    // The same placement on a session asked to run on CUDA is the fallback the warning is for.
    expect(placementWarning(s, 'cuda')).toMatch(
      new RegExp(`^${nodes.length} of ${nodes.length} nodes fell back`),
    );
    expect(placementWarning(s, 'cuda')).toContain(`Gemm ×${s.cpuOps.Gemm}`);
  });

  it('rejects what is not a profile', () => {
    expect(() => parseProfile({ events: [] })).toThrow(/JSON array/);
    expect(parseProfile([])).toEqual([]);
  });
});

/** A trace event in the layout of the CPU profile above. */
const nodeEvent = (name: string, op: string, provider: string) => ({
  cat: 'Node',
  name: `${name}_kernel_time`,
  ph: 'X',
  dur: 10,
  args: { op_name: op, provider },
});

describe('a mixed CUDA/CPU profile', () => {
  const session = { cat: 'Session', name: 'session_initialization', args: {} };
  const mostlyGpu = [
    session,
    ...Array.from({ length: 6 }, (_, i) => nodeEvent(`gemm${i}`, 'Gemm', CUDA_PROVIDER)),
    nodeEvent('copy_in', 'MemcpyFromHost', CUDA_PROVIDER),
    nodeEvent('shape', 'Shape', CPU_PROVIDER),
    nodeEvent('gather_shape', 'Gather', CPU_PROVIDER),
    { cat: 'Node', name: 'gemm0_fence_before', args: { op_name: 'Gemm' } }, // no provider: not a kernel event
    nodeEvent('gemm0', 'Gemm', CUDA_PROVIDER), // a second run of the same node counts once
  ];

  it('counts nodes per provider and device copies, and does not warn when most ran on the GPU', () => {
    const s = summarizePlacement(parseProfile(mostlyGpu));
    expect(s).toEqual({
      nodes: 9,
      providers: { [CUDA_PROVIDER]: 7, [CPU_PROVIDER]: 2 },
      copies: 1,
      cpuOps: { Shape: 1, Gather: 1 },
    });
    expect(placementLine(s)).toBe(`9 nodes: ${CUDA_PROVIDER} 7, ${CPU_PROVIDER} 2 (1 device copies)`);
    expect(placementWarning(s, 'cuda')).toBeNull();
  });

  it('warns, naming the CPU ops, when most nodes fell back', () => {
    const fellBack = [
      nodeEvent('conv', 'Conv', CUDA_PROVIDER),
      nodeEvent('reorder', 'ReorderInput', CPU_PROVIDER),
      nodeEvent('nchwc0', 'Conv', CPU_PROVIDER),
      nodeEvent('nchwc1', 'Conv', CPU_PROVIDER),
    ];
    const s = summarizePlacement(parseProfile(fellBack));
    expect(placementWarning(s, 'cuda')).toBe(
      '3 of 4 nodes fell back to the CPU on a cuda session: Conv ×2, ReorderInput ×1',
    );
    // Exactly half is not "most".
    expect(placementWarning(summarizePlacement(parseProfile(fellBack.slice(0, 2))), 'cuda')).toBeNull();
  });
});

describe('the pool load path', () => {
  it('runs the check when asked (on CPU: every node on the CPU provider), logs it and keeps it on the handle', async () => {
    const lines: string[] = [];
    const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: () => {} };
    const pool = await InferencePool.start({ size: 1, runTimeoutMs: 60_000, log });
    try {
      const spec = {
        dir: modelDir,
        device: 'cpu' as const,
        intraOpThreads: 1,
        shareWeights: false,
        weightBytes: 1,
      };
      const checked = await pool.load({ ...spec, key: 'bert/1#0', placementCheck: 'always' });
      expect(checked.placement?.nodes).toBeGreaterThan(20);
      expect(checked.placement?.providers).toEqual({ [CPU_PROVIDER]: checked.placement!.nodes });
      expect(lines).toContain(`placement of bert/1#0 on cpu: ${placementLine(checked.placement!)}`);
      // Off by default on the CPU (it costs a second session load and a run).
      const plain = await pool.load({ ...spec, key: 'bert/1#1' });
      expect(plain.placement).toBeNull();
    } finally {
      await pool.close();
    }
  });
});

describe('the server with --placement-check always', () => {
  it('shows the placement line in V2 model metadata; the default (cuda) shows none on the CPU', async () => {
    const repo = await fixtureRepository();
    try {
      for (const [mode, expected] of [
        ['always', /^\d+ nodes: CPUExecutionProvider \d+$/],
        ['cuda', undefined],
      ] as const) {
        const server = await startTestServer(repo.dir, { placementCheck: mode });
        try {
          const meta = (await (await fetch(`${server.url}/v2/models/${TEXT_MODEL}`)).json()) as {
            parameters: Record<string, unknown>;
          };
          if (expected) expect(meta.parameters.placement).toMatch(expected);
          else expect(meta.parameters).not.toHaveProperty('placement');
        } finally {
          await server.close();
        }
      }
    } finally {
      repo.cleanup();
    }
  });
});
