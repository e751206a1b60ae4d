/**
 * An inference worker thread. It owns onnxruntime sessions (one per model instance assigned to it; each
 * session's weights exist once in the process) and runs one message at a time: onnxruntime's create/run block
 * this thread, never the HTTP thread. Protocol (see pool.ts): `load`, `run`, `unload`, each answered by a reply
 * with the same `id`. Tensors travel in transfer lists both ways.
 */
import { parentPort } from 'node:worker_threads';
import type { ExecutionDevice, Feeds, ModelSession } from './session.js';
import type { HostTensor } from '../tensor.js';
import { wantsPlacementCheck, type PlacementCheck, type PlacementSummary } from './placement.js';

export type WorkerRequest =
  | {
      op: 'load';
      id: number;
      key: string;
      dir: string;
      device: ExecutionDevice;
      intraOpThreads: number;
      shareWeights: boolean;
      /** Profile one probe run to see where the nodes went (placement-probe.ts); default 'cuda'. */
      placementCheck?: PlacementCheck;
    }
  | { op: 'run'; id: number; key: string; feeds: Feeds; outputs?: string[] }
  | { op: 'unload'; id: number; key: string };

export type WorkerReply =
  | {
      id: number;
      ok: true;
      op: 'load';
      device: ExecutionDevice;
      loadMs: number;
      inputNames: string[];
      outputNames: string[];
      logs: string[];
      /** Nodes per execution provider from the placement check, when it ran. */
      placement: PlacementSummary | null;
    }
  | { id: number; ok: true; op: 'run'; outputs: Record<string, HostTensor<'float32'>>; computeMs: number }
  | { id: number; ok: true; op: 'unload' }
  | { id: number; ok: false; error: { name: string; message: string } };

const sessions = new Map<string, ModelSession>();

/**
 * Test-only fault injection (never set in production): `PADSERVE_TEST_FAULTS=crash:<model>,hang:<model>` makes a
 * run of an instance whose key starts with `<model>/` end this worker thread (as a native crash would) or spin
 * for `PADSERVE_TEST_HANG_MS` (default 60 s; a hung worker), so that tests exercise the pool's real recovery.
 */
const FAULTS = (process.env.PADSERVE_TEST_FAULTS ?? '')
  .split(',')
  .map((f) => f.trim().split(':'))
  .filter((f): f is [string, string] => f.length === 2 && (f[0] === 'crash' || f[0] === 'hang'));

function injectFault(key: string): void {
  for (const [kind, model] of FAULTS) {
    if (!key.startsWith(`${model}/`)) continue;
    if (kind === 'crash') process.exit(70);
    const end = Date.now() + Number(process.env.PADSERVE_TEST_HANG_MS ?? 60_000);
    while (Date.now() < end) {
      /* hung: spins until the pool terminates the thread */
    }
  }
}

async function handle(msg: WorkerRequest): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  switch (msg.op) {
    case 'load': {
      const logs: string[] = [];
      const old = sessions.get(msg.key);
      if (old) await old.release();
      // onnxruntime is imported on the first load: a worker that holds no model costs only its isolate.
      const { loadOnDevice } = await import('./device.js');
      const s = await loadOnDevice(
        msg.dir,
        msg.device,
        { intraOpThreads: msg.intraOpThreads, disablePrepacking: msg.shareWeights },
        (l) => logs.push(l),
      );
      // Every bucket graph is warmed and timed before the instance counts as loaded (readiness covers them all);
      // the times are logged where there is a choice to plan (more than one bucket).
      const costs = await s.calibrate();
      if (costs.size > 1)
        logs.push(
          `buckets ${[...costs].map(([b, ms]) => `${b}: ${ms.toFixed(1)} ms`).join(', ')} (warm-up run times, used to plan batches)`,
        );
      sessions.set(msg.key, s);
      let placement: PlacementSummary | null = null;
      if (wantsPlacementCheck(msg.placementCheck, s.device)) {
        const { probePlacement } = await import('./placement-probe.js');
        placement = await probePlacement(msg.dir, s.device, {
          intraOpThreads: msg.intraOpThreads,
          disablePrepacking: msg.shareWeights,
        });
      }
      return {
        reply: {
          id: msg.id,
          ok: true,
          op: 'load',
          device: s.device,
          loadMs: s.loadMs,
          inputNames: [...s.inputNames],
          outputNames: [...s.outputNames],
          logs,
          placement,
        },
        transfer: [],
      };
    }
    case 'run': {
      const s = sessions.get(msg.key);
      if (!s) throw new Error(`model instance ${msg.key} is not loaded in this worker`);
      if (FAULTS.length) injectFault(msg.key);
      const t0 = performance.now();
      const outputs = await s.run(msg.feeds, msg.outputs);
      const computeMs = performance.now() - t0;
      const transfer: ArrayBuffer[] = [];
      for (const [name, t] of Object.entries(outputs)) {
        // Own, detachable buffers only: copy views of larger (or native) buffers.
        const own =
          t.data.byteOffset === 0 &&
          t.data.byteLength === t.data.buffer.byteLength &&
          t.data.buffer instanceof ArrayBuffer;
        const data = own ? t.data : t.data.slice();
        outputs[name] = { dtype: 'float32', shape: [...t.shape], data };
        transfer.push(data.buffer as ArrayBuffer);
      }
      return { reply: { id: msg.id, ok: true, op: 'run', outputs, computeMs }, transfer };
    }
    case 'unload': {
      const s = sessions.get(msg.key);
      sessions.delete(msg.key);
      if (s) await s.release();
      return { reply: { id: msg.id, ok: true, op: 'unload' }, transfer: [] };
    }
  }
}

if (parentPort) {
  const port = parentPort;
  // One message at a time, in arrival order (the pool already sends at most one batch per instance).
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: WorkerRequest) => {
    chain = chain.then(async () => {
      try {
        const { reply, transfer } = await handle(msg);
        try {
          port.postMessage(reply, transfer);
        } catch {
          port.postMessage(reply); // a buffer that cannot be detached: send a copy
        }
      } catch (err) {
        const e = err as Error;
        port.postMessage({
          id: msg.id,
          ok: false,
          error: { name: e.name ?? 'Error', message: e.message ?? String(err) },
        } satisfies WorkerReply);
      }
    });
  });
  port.postMessage({ ready: true });
}
