import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, renderSettingsMarkdown, SETTINGS } from '../../server/config.js';
import { planThreads } from '../../src/threads.js';
import { parseServingConfig, selectVersions } from '../../src/repository/serving.js';
import { REPO_ROOT } from '../support/paths.js';
import { SERVING_DEFAULTS } from '../support/serving-defaults.js';

describe('server settings', () => {
  it('docs/settings.md is generated from the settings table', () => {
    const path = join(REPO_ROOT, 'docs', 'settings.md');
    const want = renderSettingsMarkdown();
    if (process.env.UPDATE_SETTINGS_DOC === '1' || !existsSync(path)) writeFileSync(path, want);
    expect(readFileSync(path, 'utf8')).toBe(want);
  });

  it('every setting has a flag, a PADSERVE_ env var and a description', () => {
    const flags = new Set<string>();
    for (const [name, s] of Object.entries(SETTINGS)) {
      expect(s.env, name).toMatch(/^PADSERVE_[A-Z0-9_]+$/);
      expect(s.doc.length, name).toBeGreaterThan(10);
      expect(flags.has(s.flag), name).toBe(false);
      flags.add(s.flag);
    }
  });

  it('takes flags over env over defaults, and refuses bad values with the setting named', () => {
    expect(loadConfig([], {}).port).toBe(8080);
    expect(loadConfig([], {}).host).toBe('127.0.0.1');
    expect(loadConfig([], { PADSERVE_PORT: '9000' }).port).toBe(9000);
    expect(loadConfig(['--port', '9100'], { PADSERVE_PORT: '9000' }).port).toBe(9100);
    expect(loadConfig(['--no-build-default-models'], {}).buildDefaultModels).toBe(false);
    expect(loadConfig([], { PADSERVE_BUILD_DEFAULT_MODELS: 'false' }).buildDefaultModels).toBe(false);
    expect(loadConfig(['--length-buckets', '8,16'], {}).lengthBuckets).toEqual([8, 16]);
    expect(loadConfig([], { PADSERVE_ADMIN_TOKEN: 's3cret' }).adminToken).toBe('s3cret');
    expect(() => loadConfig(['--device', 'tpu'], {})).toThrow(ConfigError);
    expect(() => loadConfig([], { PADSERVE_WORKERS: 'many' })).toThrow(/PADSERVE_WORKERS/);
    expect(() => loadConfig(['--bogus'], {})).toThrow(ConfigError);
  });

  it('budgets threads: workers × intra-op ≤ cores by default', () => {
    expect(planThreads({ workers: 1, intraOpThreads: 0, preprocessWorkers: 0, cores: 2 })).toMatchObject({
      intraOpThreads: 2,
      preprocessWorkers: 1,
      oversubscribed: false,
    });
    expect(planThreads({ workers: 4, intraOpThreads: 0, preprocessWorkers: 0, cores: 2 })).toMatchObject({
      intraOpThreads: 1,
      preprocessWorkers: 4,
      oversubscribed: true,
    });
    expect(planThreads({ workers: 2, intraOpThreads: 0, preprocessWorkers: 3, cores: 16 })).toMatchObject({
      intraOpThreads: 8,
      preprocessWorkers: 3,
      oversubscribed: false,
    });
  });
});

describe('serving.json', () => {
  const defaults = SERVING_DEFAULTS;
  it('fills defaults and validates every field', () => {
    expect(parseServingConfig({}, defaults)).toMatchObject({
      ...defaults,
      version_policy: { latest: 1 },
      tasks: [],
    });
    expect(
      parseServingConfig({ max_batch_size: 4, tasks: ['MNLI'], version_policy: { all: true } }, defaults),
    ).toMatchObject({ max_batch_size: 4, tasks: ['mnli'] });
    expect(() => parseServingConfig({ max_batch_sise: 4 }, defaults)).toThrow(/unknown field/);
    expect(() => parseServingConfig({ max_batch_size: 0 }, defaults)).toThrow(/max_batch_size/);
    expect(() => parseServingConfig({ length_buckets: [32, 16] }, defaults)).toThrow(/ascending/);
    expect(() => parseServingConfig({ version_policy: { newest: 1 } }, defaults)).toThrow(/version_policy/);
  });
  it('selects versions by policy', () => {
    expect(selectVersions({ latest: 1 }, [3, 1, 2])).toEqual([3]);
    expect(selectVersions({ latest: 2 }, [3, 1, 2])).toEqual([2, 3]);
    expect(selectVersions({ all: true }, [2, 1])).toEqual([1, 2]);
    expect(selectVersions({ specific: [1, 5] }, [1, 2])).toEqual([1]);
  });
});

describe('warmup shapes', () => {
  it('cover every shape the batcher forms, capped by the graph per-sample form, or a subset by mode', async () => {
    const { warmupShapes } = await import('../../src/repository/model.js');
    const { CountPolicy, TokenBudgetPolicy } = await import('../../src/batching/policy.js');
    expect(warmupShapes(new CountPolicy(4), 'all', null).map((s) => s.rows)).toEqual([1, 2, 3, 4]);
    expect(warmupShapes(new CountPolicy(8), 'all', 1).map((s) => s.rows)).toEqual([1]);
    expect(warmupShapes(new CountPolicy(6), 'powers-of-two', null).map((s) => s.rows)).toEqual([1, 2, 4, 6]);
    const tokens = new TokenBudgetPolicy({ maxBatchSize: 4, maxBatchTokens: 64, buckets: [16, 32] });
    expect(warmupShapes(tokens, 'all', null)).toHaveLength(4 + 2);
    expect(warmupShapes(tokens, 'buckets', null)).toEqual([
      { rows: 1, length: 16 },
      { rows: 1, length: 32 },
    ]);
    expect(warmupShapes(tokens, 'none', null)).toEqual([]);
  });
});
