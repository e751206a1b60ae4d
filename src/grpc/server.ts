/**
 * The gRPC listener: `inference.GRPCInferenceService` (src/grpc/proto/grpc_service.proto, loaded at run time
 * with @grpc/proto-loader) on its own port, bound to the HTTP server's host, serving the handlers of
 * service.ts over the same server context (models, batcher, limits, lifecycle, metrics) as the HTTP routes.
 *
 * Shutdown follows the HTTP drain (server/main.ts): once the lifecycle says draining, new inference calls are
 * refused with UNAVAILABLE by the handlers; `close()` stops accepting calls and resolves when the in-flight ones
 * have answered; `forceClose()` cancels whatever is left when the grace period is over.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ServerContext } from '../inference/server-context.js';
import type { Logger } from '../observability/logging.js';
import { inferenceService } from './service.js';

/** Next to this module in src/ and in dist/ (the build copies the .proto beside the compiled files). */
export const PROTO_FILE = fileURLToPath(new URL('./proto/grpc_service.proto', import.meta.url));

/** What the messages look like in JavaScript (the service and the clients in tests and loadtest/ agree). */
export const PROTO_OPTIONS: protoLoader.Options = {
  keepCase: true, // field names as in the .proto: raw_input_contents, model_name
  longs: String, // int64/uint64 exactly (shapes are checked and converted where they are read)
  enums: String,
  defaults: true, // absent repeated fields are [] and absent strings '' (proto3 semantics)
  oneofs: true, // InferParameter: `parameter_choice` names the field that is set
};

export function loadServiceDefinition(): grpc.ServiceDefinition {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, PROTO_OPTIONS)) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  return pkg.inference.GRPCInferenceService.service;
}

/** The client constructor for the same service (tests and the load generator). */
export function loadClientConstructor(): grpc.ServiceClientConstructor {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, PROTO_OPTIONS)) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  return pkg.inference.GRPCInferenceService;
}

export interface GrpcOptions {
  host: string;
  /** 0 = any free port (the bound one is in `address`). */
  port: number;
  /** Largest request message (the HTTP body limit); larger ones get RESOURCE_EXHAUSTED from grpc-js. */
  maxMessageBytes: number;
  log: Logger;
}

export interface GrpcListener {
  /** host:port as a client dials it (`[::1]:50051` for IPv6). */
  address: string;
  port: number;
  /** Stops accepting calls; resolves when every in-flight call has answered. */
  close(): Promise<void>;
  /** Cancels the calls still running (the grace period is over). */
  forceClose(): void;
}

export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startGrpc(ctx: ServerContext, opts: GrpcOptions): Promise<GrpcListener> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    // Answers are small (logits, probabilities); no cap beyond grpc-js's default (none).
    'grpc.max_send_message_length': -1,
  });
  server.addService(loadServiceDefinition(), inferenceService(ctx, opts.log));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(hostPort(opts.host, opts.port), grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  let closing: Promise<void> | null = null;
  return {
    address: hostPort(opts.host, port),
    port,
    close: () => (closing ??= new Promise<void>((resolve) => server.tryShutdown(() => resolve()))),
    forceClose: () => server.forceShutdown(),
  };
}
