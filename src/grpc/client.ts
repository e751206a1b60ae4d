/**
 * A small promise-based client of padserve's gRPC service (the tests and the load generator use it): one
 * channel to `address`, unary calls by method name with optional bearer token, deadline and abort signal. It
 * speaks the same grpc_service.proto as the server, with the same message shapes (messages.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { loadClientConstructor, loadServiceDefinition } from './server.js';
import { SERVICE } from './call.js';

export interface CallOptions {
  token?: string;
  /** Milliseconds from now (the gRPC deadline the server turns into the request deadline). */
  timeoutMs?: number;
  signal?: AbortSignal;
  metadata?: Record<string, string>;
  /** Receives the response's initial metadata (padserve's timing entries: x-queue-time, x-batch-size, ...). */
  onMetadata?: (md: grpc.Metadata) => void;
}

export interface InferenceClient {
  call<Res = unknown>(method: string, request: object, opts?: CallOptions): Promise<Res>;
  /**
   * A call with a request already serialized (encodeRequest) whose answer stays serialized: the load generator
   * sends pre-built bytes and skips decoding, as autocannon does on the HTTP side.
   */
  callRaw(method: string, request: Buffer, opts?: CallOptions): Promise<Buffer>;
  close(): void;
}

/** A request message as its protobuf bytes. */
export function encodeRequest(method: string, request: object): Buffer {
  const m = loadServiceDefinition()[method];
  if (!m) throw new Error(`no gRPC method ${method}`);
  return m.requestSerialize(request);
}

type UnaryMethod = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

export function connectInference(address: string, options: grpc.ChannelOptions = {}): InferenceClient {
  const Client = loadClientConstructor();
  const client = new Client(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
    ...options,
  });
  const metadataOf = (opts: CallOptions) => {
    const md = new grpc.Metadata();
    if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    return md;
  };
  const optionsOf = (opts: CallOptions): grpc.CallOptions =>
    opts.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {};
  const watch = (call: grpc.ClientUnaryCall, opts: CallOptions) => {
    opts.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    if (opts.onMetadata) call.on('metadata', opts.onMetadata);
  };
  const same = (b: Buffer) => b;
  return {
    call<Res>(method: string, request: object, opts: CallOptions = {}): Promise<Res> {
      const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
      if (typeof fn !== 'function') return Promise.reject(new Error(`no gRPC method ${method}`));
      return new Promise<Res>((resolve, reject) => {
        const call = fn.call(client, request, metadataOf(opts), optionsOf(opts), (err, res) =>
          err ? reject(err) : resolve(res as Res),
        );
        watch(call, opts);
      });
    },
    callRaw(method: string, request: Buffer, opts: CallOptions = {}): Promise<Buffer> {
      return new Promise<Buffer>((resolve, reject) => {
        const call = client.makeUnaryRequest(
          `${SERVICE}/${method}`,
          same,
          same,
          request,
          metadataOf(opts),
          optionsOf(opts),
          (err, res) => (err ? reject(err) : resolve(res!)),
        );
        watch(call, opts);
      });
    },
    close: () => client.close(),
  };
}
