/**
 * Execution providers by setting. `cpu` (default) always works. `cuda` is tried when onnxruntime-node has the
 * CUDA provider (it is not bundled in the npm tarball; `ONNXRUNTIME_NODE_INSTALL=cuda12` installs it); when it
 * is missing or the session cannot be created on it, one clear line is logged and the model loads on the CPU.
 */
import ort from 'onnxruntime-node';
import { ModelSession, type ExecutionDevice, type SessionOptions } from './session.js';

export const DEVICES: readonly ExecutionDevice[] = ['cpu', 'cuda'];

/** Whether this onnxruntime-node build can use `device` at all. */
export function deviceAvailable(device: ExecutionDevice): { ok: boolean; why: string } {
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
  if (!entry.bundled && !process.env.ONNXRUNTIME_NODE_INSTALL?.includes('cuda')) {
    return {
      ok: false,
      why: `the ${device} provider is not installed (reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 on a CUDA 12 host)`,
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
