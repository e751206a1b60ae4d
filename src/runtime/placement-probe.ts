/**
 * The placement check behind `InstanceSpec.checkPlacement`: a second session of the model, created with
 * onnxruntime's profiler on, runs one probe batch (batch 1, see `probeFeeds`) and is released, which writes its
 * profile; the profile gives the execution provider of every node (placement.ts). A separate session because
 * profiling is a creation-time option and a serving session would keep recording every run. It costs one more
 * session load and one run, so the pool asks for it only on CUDA by default.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProfile, probeFeeds, summarizePlacement, type PlacementSummary } from './placement.js';
import { ModelSession, type ExecutionDevice, type SessionOptions } from './session.js';

export async function probePlacement(
  dir: string,
  device: ExecutionDevice,
  opts: Omit<SessionOptions, 'device' | 'profilePrefix'>,
): Promise<PlacementSummary> {
  const tmp = mkdtempSync(join(tmpdir(), 'padserve-placement-'));
  try {
    const session = await ModelSession.load(dir, { ...opts, device, profilePrefix: join(tmp, 'placement') });
    try {
      await session.run(probeFeeds(session.card));
    } finally {
      await session.release(); // ends profiling: the profile files are complete now
    }
    const nodes = readdirSync(tmp)
      .filter((f) => f.endsWith('.json'))
      .flatMap((f) => parseProfile(JSON.parse(readFileSync(join(tmp, f), 'utf8'))));
    if (!nodes.length) throw new Error('the profiled probe run recorded no nodes');
    return summarizePlacement(nodes);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
