/**
 * CUDA provider detection (src/runtime/device.ts): by the provider files next to onnxruntime-node's native
 * binding, not by an install-time variable. The container test runs the same checks inside the CPU image.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deviceAvailable, ortBindingDir, PROVIDER_LIBRARIES } from '../../src/runtime/device.js';

const dir = mkdtempSync(join(tmpdir(), 'padserve-device-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('deviceAvailable', () => {
  it('looks where onnxruntime-node loads its binding from', () => {
    expect(existsSync(join(ortBindingDir(), 'onnxruntime_binding.node'))).toBe(true);
  });

  it('cpu always; cuda only when every provider library is on disk, whatever ONNXRUNTIME_NODE_INSTALL says', () => {
    expect(deviceAvailable('cpu', dir).ok).toBe(true);
    const before = process.env.ONNXRUNTIME_NODE_INSTALL;
    process.env.ONNXRUNTIME_NODE_INSTALL = 'cuda12';
    try {
      const none = deviceAvailable('cuda', dir);
      expect(none.ok).toBe(false);
      expect(none.why).toContain('libonnxruntime_providers_cuda.so');
      const [first, ...rest] = PROVIDER_LIBRARIES.cuda!;
      writeFileSync(join(dir, first!), '');
      expect(deviceAvailable('cuda', dir).ok).toBe(rest.length === 0);
      for (const f of rest) writeFileSync(join(dir, f), '');
      expect(deviceAvailable('cuda', dir)).toEqual({ ok: true, why: '' });
    } finally {
      if (before === undefined) delete process.env.ONNXRUNTIME_NODE_INSTALL;
      else process.env.ONNXRUNTIME_NODE_INSTALL = before;
    }
  });
});
