/**
 * Execution providers by setting. `cpu` (default) always works. `cuda` is tried when onnxruntime-node's CUDA
 * provider libraries are on disk next to its native binding (the npm tarball ships only the CPU library for
 * linux/x64; onnxruntime-node's postinstall downloads the CUDA ones, e.g. `ONNXRUNTIME_NODE_INSTALL=true npm
 * rebuild onnxruntime-node` on a host that reaches NuGet). Whether they load is then found out by creating the
 * session on CUDA: when the files are missing or the session cannot be created (no driver, no GPU, a CUDA/cuDNN
 * library missing), one clear line is logged and the model loads on the CPU.
 */
import ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ModelSession, type ExecutionDevice, type SessionOptions } from './session.js';

export const DEVICES: readonly ExecutionDevice[] = ['cpu', 'cuda'];

/**
 * The folder onnxruntime-node loads its native binding from (dist/binding.js:
 * `../bin/napi-v6/${process.platform}/${process.arch}/onnxruntime_binding.node`); the providers its install
 * script downloads land there too (script/install-metadata.js, manifest `linux/x64:cuda12`).
 */
export function ortBindingDir(): string {
  const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
}

/** The provider libraries a non-bundled provider needs on disk (onnxruntime loads them by these names). */
export const PROVIDER_LIBRARIES: Partial<Record<ExecutionDevice, readonly string[]>> = {
  cuda: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'],
};

/** Whether this onnxruntime-node install can try `device` at all (`bindingDir`: where to look, for tests). */
export function deviceAvailable(
  device: ExecutionDevice,
  bindingDir: string = ortBindingDir(),
): { ok: boolean; why: string } {
  if (device === 'cpu') return { ok: true, why: '' };
  const list =
    (
      ort as unknown as { listSupportedBackends?: () => { name: string; bundled: boolean }[] }
    ).listSupportedBackends?.() ?? [];
  const entry = list.find((b) => b.name === device);
  if (!entry)
    return {
      ok: false,
      why: `onnxruntime-node ${ort.env.versions.common} does not know the ${device} provider`,
    };
  if (entry.bundled) return { ok: true, why: '' };
  const missing = (PROVIDER_LIBRARIES[device] ?? []).filter((f) => !existsSync(join(bindingDir, f)));
  if (missing.length > 0) {
    return {
      ok: false,
      why: `the ${device} provider is not installed (${missing.join(', ')} missing in ${bindingDir}; install it with ONNXRUNTIME_NODE_INSTALL=true npm rebuild onnxruntime-node on a host with CUDA 12 and NuGet access)`,
    };
  }
  return { ok: true, why: '' };
}

/**
 * Loads a model folder on `device`, falling back to the CPU with one log line. Returns the session and the
 * device it actually runs on.
 */
export async function loadOnDevice(
  dir: string,
  device: ExecutionDevice,
  opts: Omit<SessionOptions, 'device'>,
  log: (line: string) => void,
): Promise<ModelSession> {
  if (device !== 'cpu') {
    const avail = deviceAvailable(device);
    if (!avail.ok) {
      log(`device ${device} unavailable: ${avail.why}; falling back to cpu`);
    } else {
      try {
        return await ModelSession.load(dir, { ...opts, device });
      } catch (err) {
        log(
          `device ${device} failed for ${dir}: ${(err as Error).message.split('\n')[0]}; falling back to cpu`,
        );
      }
    }
  }
  return ModelSession.load(dir, { ...opts, device: 'cpu' });
}
