/**
 * Seeded randomness for the load generator: a small PRNG (mulberry32), exponential inter-arrival times and the
 * arrival schedules of the open-loop mode. Same seed → same schedule and same request bodies on every machine.
 */

import { seededRandom, type Random } from '../src/synth/random.js';
export { seededRandom, type Random };

/** An exponential sample with the given mean (inverse CDF; never 0, never Infinity). */
export function exponential(random: Random, mean: number): number {
  const u = random();
  return -Math.log(1 - Math.min(u, 1 - 2 ** -32)) * mean;
}

export function pick<T>(random: Random, items: readonly T[]): T {
  if (!items.length) throw new Error('pick from an empty list');
  return items[Math.floor(random() * items.length)]!;
}

/** A normal sample (Box–Muller). */
export function normal(random: Random, mean: number, sd: number): number {
  const u = Math.max(random(), 2 ** -32);
  const v = random();
  return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export type Arrivals = 'poisson' | 'constant';

/**
 * Arrival offsets (ms from the start) in [0, durationMs) at `ratePerS`: exponential gaps (a Poisson process) or
 * evenly spaced ones. The schedule is computed up front so that firing it costs nothing per request.
 */
export function arrivalSchedule(
  ratePerS: number,
  durationMs: number,
  arrivals: Arrivals,
  seed: number,
): number[] {
  if (!(ratePerS > 0)) throw new Error(`rate must be > 0, got ${ratePerS}`);
  if (!(durationMs > 0)) throw new Error(`duration must be > 0, got ${durationMs}`);
  const meanGap = 1000 / ratePerS;
  const random = seededRandom(seed);
  const out: number[] = [];
  let t = arrivals === 'poisson' ? exponential(random, meanGap) : 0;
  while (t < durationMs) {
    out.push(t);
    t += arrivals === 'poisson' ? exponential(random, meanGap) : meanGap;
  }
  return out;
}
