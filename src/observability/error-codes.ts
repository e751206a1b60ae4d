/**
 * Every error code padserve answers with, in one table: its failure reason (the `error_type` of the body and the
 * `outcome` metric label), the HTTP status where it differs from the reason's default, and what it means. A
 * `ServeError` takes an `ErrorCode` of its reason only (`CodeOf<R>`), so a misspelt code, or a code given the
 * wrong reason, is a compile error. The README's and docs/server.md's error tables are checked against this
 * table by test/unit/error-codes.test.ts (`UPDATE_ERROR_DOC=1 npx vitest run test/unit/error-codes.test.ts` rewrites
 * docs/errors.md).
 *
 * Imports nothing; imported by observability/errors.ts (and through it by every server layer).
 */

export const FAILURE_REASONS = [
  'invalid_input',
  'not_found',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'rejected_queue_full',
  'deadline_exceeded',
  'client_cancelled',
  'not_ready',
  'draining',
  'worker_failed',
  'internal',
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/** Default HTTP status per reason. 499 (client closed request, nginx's convention) is never seen by a client. */
export const REASON_STATUS: Record<FailureReason, number> = {
  invalid_input: 400,
  not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthorized: 401,
  rejected_queue_full: 429,
  deadline_exceeded: 504,
  client_cancelled: 499,
  not_ready: 503,
  draining: 503,
  worker_failed: 503,
  internal: 500,
};

/** Whether the same request may succeed if sent again later (429 / 503 / 504 answers). */
export const REASON_RETRYABLE: Record<FailureReason, boolean> = {
  invalid_input: false,
  not_found: false,
  payload_too_large: false,
  unsupported_media_type: false,
  unauthorized: false,
  rejected_queue_full: true,
  deadline_exceeded: true,
  client_cancelled: false,
  not_ready: true,
  draining: true,
  worker_failed: true,
  internal: false,
};

interface CodeSpec {
  readonly reason: FailureReason;
  /** Only where it differs from `REASON_STATUS[reason]`. */
  readonly status?: number;
  readonly meaning: string;
}

const spec = <R extends FailureReason>(reason: R, meaning: string, status?: number) =>
  ({ reason, meaning, ...(status === undefined ? {} : { status }) }) as {
    reason: R;
    meaning: string;
    status?: number;
  };

export const ERROR_CODES = {
  // Request framing (any route).
  invalid_request: spec('invalid_input', 'the body or query does not match the route schema'),
  bad_request: spec(
    'invalid_input',
    'a malformed request the HTTP layer refused (any other 4xx from fastify)',
  ),
  empty_body: spec('invalid_input', 'a JSON body was expected and none came'),
  invalid_json: spec('invalid_input', 'the body is not valid JSON'),
  invalid_content_length: spec('invalid_input', 'Content-Length does not match the body'),
  missing_content_type: spec('invalid_input', 'a body without a Content-Type'),
  invalid_content_type: spec('invalid_input', 'a Content-Type that cannot be parsed'),
  invalid_content_encoding: spec('invalid_input', 'a gzip / deflate body that does not inflate'),
  invalid_deadline: spec('invalid_input', 'the request timeout is not a positive number of milliseconds'),
  invalid_priority: spec('invalid_input', 'the priority parameter is not one the server knows'),
  route_not_found: spec('not_found', 'no route with this method and path'),
  body_too_large: spec('payload_too_large', 'the body is larger than the body limit'),
  unsupported_media_type: spec('unsupported_media_type', 'a Content-Type the route does not accept'),
  unsupported_content_encoding: spec(
    'unsupported_media_type',
    'a Content-Encoding other than gzip / deflate',
  ),
  unauthorized: spec('unauthorized', 'missing or wrong bearer token'),
  admin_api_off: spec('unauthorized', 'model control needs an admin token and none is configured', 403),
  too_many_connections: spec('rejected_queue_full', 'more open connections than --max-connections'),
  // Multipart (POST /classify).
  invalid_multipart: spec('invalid_input', 'a multipart body that cannot be parsed'),
  not_multipart: spec('invalid_input', 'a multipart Content-Type without a usable boundary', 406),
  file_too_large: spec('payload_too_large', 'an uploaded file over the multipart file size limit'),
  too_many_parts: spec('payload_too_large', 'more multipart parts than allowed'),
  too_many_files: spec('payload_too_large', 'more than one uploaded file'),
  too_many_fields: spec('payload_too_large', 'more multipart fields than allowed'),
  // Models, versions, tasks.
  unknown_model: spec('not_found', 'no model of this name in the repository'),
  unknown_version: spec('not_found', 'the model has no such version'),
  unknown_task: spec('not_found', 'not one of the GLUE tasks'),
  task_not_served: spec('not_found', 'a GLUE task no loaded model serves'),
  no_image_model: spec('not_found', 'no image model is loaded to answer /classify'),
  not_an_image_model: spec('invalid_input', '/classify named a model that is not an image model'),
  wrong_input_kind: spec('invalid_input', 'image rows sent to a text model or the other way round'),
  model_loading: spec('not_ready', 'the model is loading; retry after Retry-After'),
  model_not_ready: spec('not_ready', 'the model is not loaded (unloaded, or its load failed)'),
  model_unloaded: spec('not_ready', 'the version was unloaded while the request waited'),
  instance_unloaded: spec('not_ready', 'the worker holding the model was stopped while the request waited'),
  golden_set_unreadable: spec(
    'not_ready',
    "the version's golden set cannot be read, so it was not swapped in",
  ),
  golden_set_empty: spec('not_ready', "the version's golden set holds no images, so it was not swapped in"),
  golden_unlabelled: spec(
    'not_ready',
    "a golden image's label is not one of the model's, so it was not swapped in",
  ),
  golden_accuracy_below_minimum: spec(
    'not_ready',
    'the version scored below its golden minimum, so it was not swapped in',
  ),
  shutting_down: spec('draining', 'the server is draining; retry on another instance'),
  // Admission and deadlines.
  queue_full: spec('rejected_queue_full', "the model's queue (or the preprocessing pool's) is full"),
  deadline_exceeded: spec('deadline_exceeded', 'the deadline passed before the request was run'),
  client_cancelled: spec('client_cancelled', 'the client went away; never delivered'),
  // Images.
  missing_image: spec('invalid_input', 'no image in the request'),
  empty_image: spec('invalid_input', 'an image of zero bytes'),
  unsupported_image_format: spec(
    'unsupported_media_type',
    'not a JPEG / PNG / WebP / GIF / AVIF / TIFF image',
  ),
  image_too_large: spec(
    'payload_too_large',
    'width x height above --max-input-pixels (read from the header)',
  ),
  image_decode_failed: spec('invalid_input', 'a supported format whose data is corrupt or truncated'),
  invalid_top_k: spec('invalid_input', 'top_k is not an integer between 1 and the number of labels'),
  // Text.
  empty_text: spec('invalid_input', 'no text to tokenise'),
  invalid_text: spec('invalid_input', 'text the tokenizer refuses (lone surrogates, NUL, ...)'),
  text_too_long: spec('payload_too_large', 'more characters than the text limit'),
  sequence_too_long: spec('invalid_input', "more tokens than the model's sequence length"),
  invalid_utf8: spec('invalid_input', 'bytes that are not valid UTF-8'),
  invalid_pair: spec('invalid_input', 'a pairs entry that is not a sentence pair'),
  ambiguous_body: spec('invalid_input', 'both pairs and single-item fields in one body'),
  glue_not_an_object: spec('invalid_input', 'a GLUE item that is not a JSON object'),
  glue_missing: spec('invalid_input', "a GLUE item without the task's text field (details.field)"),
  glue_invalid: spec('invalid_input', 'a GLUE text field that is not a string (details.field)'),
  glue_ambiguous: spec('invalid_input', 'a GLUE item naming its texts two ways (details.field)'),
  glue_unexpected: spec('invalid_input', 'a second text for a single-sentence task (details.field)'),
  // V2 tensors.
  duplicate_input: spec('invalid_input', 'the same input named twice'),
  missing_input: spec('invalid_input', 'an input the model needs is absent'),
  unknown_input: spec('invalid_input', 'an input the model does not have'),
  mixed_inputs: spec('invalid_input', 'image and text inputs in one request'),
  unknown_output: spec('invalid_input', 'an output the model does not have'),
  invalid_datatype: spec('invalid_input', 'a datatype name V2 does not define'),
  unsupported_datatype: spec('invalid_input', 'a V2 datatype padserve does not accept for this input'),
  wrong_datatype: spec('invalid_input', 'a datatype this input does not take'),
  invalid_shape: spec('invalid_input', 'a shape that is not a list of non-negative integers'),
  shape_mismatch: spec('invalid_input', "a shape that does not fit the model's input"),
  invalid_data: spec('invalid_input', 'data that is not the list of values the datatype needs'),
  missing_data: spec('invalid_input', 'an input without data'),
  data_length_mismatch: spec('invalid_input', 'a data length that is not the product of the shape'),
  non_finite_value: spec('invalid_input', 'NaN or infinity in a float input'),
  value_out_of_range: spec('invalid_input', 'a token id or value outside what the model accepts'),
  empty_batch: spec('invalid_input', 'a batch of zero rows'),
  batch_too_large: spec('invalid_input', "more rows than the model's max_batch_size"),
  invalid_binary_header: spec('invalid_input', 'Inference-Header-Content-Length does not fit the body'),
  invalid_binary_data: spec('invalid_input', 'binary tensor data whose size does not match the tensor'),
  missing_binary_data: spec('invalid_input', 'binary_data_size announced but no bytes'),
  raw_binary_unsupported: spec(
    'invalid_input',
    'a raw binary body (header length 0) for a model with more than one input',
  ),
  invalid_parameter: spec('invalid_input', 'a parameter of the wrong type or value'),
  unsupported_parameter: spec('invalid_input', 'a parameter padserve does not implement'),
  invalid_version: spec('invalid_input', 'a version that is not a positive integer'),
  tensor_too_large: spec('payload_too_large', 'a tensor over the tensor size limit'),
  // Workers and bugs.
  worker_crashed: spec('worker_failed', 'the inference worker crashed while running the batch'),
  worker_exited: spec('worker_failed', 'the inference worker exited while running the batch'),
  inference_timeout: spec(
    'worker_failed',
    'the batch ran past the inference timeout; the worker was restarted',
  ),
  inference_failed: spec('internal', 'onnxruntime failed on the batch'),
  model_load_failed: spec('internal', 'the worker could not load the model'),
  batch_result_mismatch: spec('internal', 'the worker answered a different number of rows than it was sent'),
  invalid_preprocess_spec: spec(
    'internal',
    "the model's preprocessing spec cannot work (server configuration)",
  ),
  internal: spec('internal', 'a bug: logged with its stack; the client sees a generic message'),
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The codes whose reason is `R`. */
export type CodeOf<R extends FailureReason> = {
  [C in ErrorCode]: (typeof ERROR_CODES)[C]['reason'] extends R ? C : never;
}[ErrorCode];

/** The HTTP status a code answers with. */
export function codeStatus(code: ErrorCode): number {
  const s: CodeSpec = ERROR_CODES[code];
  return s.status ?? REASON_STATUS[s.reason];
}

/** The codes answered with an HTTP status (OpenAPI's error response descriptions). */
export function codesWithStatus(status: number): ErrorCode[] {
  return (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => codeStatus(c) === status);
}

/** The error table of docs/errors.md (test/unit/error-codes.test.ts keeps the page equal to it). */
export function errorCodeTable(): string {
  const rows = (Object.keys(ERROR_CODES) as ErrorCode[]).map((code) => {
    const s: CodeSpec = ERROR_CODES[code];
    const retry = REASON_RETRYABLE[s.reason] ? 'yes' : 'no';
    return `| \`${code}\` | ${codeStatus(code)} | \`${s.reason}\` | ${retry} | ${s.meaning} |`;
  });
  return ['| code | status | error_type | retryable | meaning |', '|---|---|---|---|---|', ...rows].join(
    '\n',
  );
}
