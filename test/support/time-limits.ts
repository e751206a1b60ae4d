/**
 * Time limits for tests that must hold on a busy machine. A limit here only catches a hang: no test asserts a
 * duration. `scaledMs(idleMs)` takes what a step needs on an idle 2-core machine and gives it
 * - HEADROOM× that (a shared CI runner or a laptop on battery is several times slower than idle),
 * - × how oversubscribed the CPUs are right now (1-minute load average ÷ cores, at least 1): a step that gets a
 *   third of the CPU takes about three times as long,
 * - × $PADSERVE_TEST_TIME_SCALE (default 1) for machines slower still (emulation, sanitizers).
 * Read at the moment a limit is taken, so a test started on a loaded machine gets the longer limit.
 */
import { availableParallelism, loadavg } from 'node:os';

const HEADROOM = 10;

export function loadFactor(): number {
  return Math.max(1, (loadavg()[0] ?? 0) / availableParallelism());
}

function envScale(): number {
  const raw = process.env.PADSERVE_TEST_TIME_SCALE;
  const v = raw === undefined || raw === '' ? 1 : Number(raw);
  if (!Number.isFinite(v) || v <= 0)
    throw new Error(`PADSERVE_TEST_TIME_SCALE must be a positive number, got ${raw}`);
  return v;
}

export function scaledMs(idleMs: number): number {
  return Math.ceil(idleMs * HEADROOM * loadFactor() * envScale());
}
