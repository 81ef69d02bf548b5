import {
  CancelTaskRequest,
  DeleteTaskPushNotificationConfigRequest,
  GetTaskPushNotificationConfigRequest,
  GetTaskRequest,
  ListTaskPushNotificationConfigsRequest,
  ListTasksRequest,
  SendMessageRequest,
  SubscribeToTaskRequest,
  TaskPushNotificationConfig,
} from "@a2a-js/sdk";
import { unstorableAt } from "../http/validation.js";
import { err, ok, type Result } from "../result.js";

/** The JSON-RPC error codes the route answers with itself (the SDK maps the others). */
export const JSONRPC_CODES = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  CONTENT_TYPE_NOT_SUPPORTED: -32005,
} as const;

/** The codec the SDK reads each method's params with: tried here first, so bad shapes are -32602. */
const PARAMS: Record<string, { fromJSON(o: unknown): unknown }> = {
  SendMessage: SendMessageRequest,
  SendStreamingMessage: SendMessageRequest,
  GetTask: GetTaskRequest,
  ListTasks: ListTasksRequest,
  CancelTask: CancelTaskRequest,
  SubscribeToTask: SubscribeToTaskRequest,
  CreateTaskPushNotificationConfig: TaskPushNotificationConfig,
  GetTaskPushNotificationConfig: GetTaskPushNotificationConfigRequest,
  ListTaskPushNotificationConfigs: ListTaskPushNotificationConfigsRequest,
  DeleteTaskPushNotificationConfig: DeleteTaskPushNotificationConfigRequest,
};

export type RpcError = { code: number; message: string; data?: unknown };
export type RpcId = string | number | null | undefined;

/** A JSON-RPC error answer. */
export const rpcError = (id: unknown, error: RpcError) => ({
  jsonrpc: "2.0" as const,
  id: id ?? null,
  error,
});

/** A JSON-RPC request the route passes on: its id, method, and the whole parsed body. */
export interface RpcCall {
  id: RpcId;
  method: string;
  body: Record<string, unknown>;
}

/** What is wrong with a known method's params, if anything. */
function paramsProblem(method: string, params: unknown): string | undefined {
  const codec = PARAMS[method];
  if (!codec) return undefined;
  if (typeof params !== "object" || params === null || Array.isArray(params))
    return "params must be a JSON object";
  const unstorable = unstorableAt(params);
  if (unstorable) return `${unstorable} must be text without NUL characters or unpaired surrogates`;
  try {
    codec.fromJSON(params);
  } catch (e) {
    return `params do not have the shape of ${method}'s request (${(e as Error).message})`;
  }
  return undefined;
}

const idOk = (v: unknown): v is RpcId =>
  v === undefined || v === null || typeof v === "string" || Number.isInteger(v);

/**
 * Reads one JSON-RPC call from a request's content type and body text (pure): the JSON-RPC error
 * to answer with (and the id to answer it under) when the content type, the JSON, the envelope or
 * a known method's params are wrong.
 */
export function parseCall(
  contentType: string | undefined,
  text: string,
): Result<RpcCall, { id: RpcId; error: RpcError }> {
  const type = String(contentType ?? "")
    .split(";", 1)[0]!
    .trim()
    .toLowerCase();
  if (type !== "application/json" && type !== "application/a2a+json")
    return err({
      id: null,
      error: {
        code: JSONRPC_CODES.CONTENT_TYPE_NOT_SUPPORTED,
        message: `Content type not supported: ${type ? `"${type.slice(0, 100)}"` : "none"}; send application/json`,
      },
    });
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    return err({
      id: null,
      error: { code: JSONRPC_CODES.PARSE_ERROR, message: `Parse error: ${(e as Error).message}` },
    });
  }
  const rpc = body as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
  if (
    typeof body !== "object" ||
    body === null ||
    Array.isArray(body) ||
    rpc.jsonrpc !== "2.0" ||
    typeof rpc.method !== "string" ||
    !idOk(rpc.id)
  )
    return err({
      id: idOk(rpc?.id) ? rpc?.id : null,
      error: {
        code: JSONRPC_CODES.INVALID_REQUEST,
        message: Array.isArray(body)
          ? "Invalid Request: batches are not supported; send one JSON-RPC request object"
          : 'Invalid Request: send {"jsonrpc": "2.0", "id": …, "method": …, "params": {…}}',
      },
    });
  const problem = paramsProblem(rpc.method, rpc.params);
  if (problem)
    return err({
      id: rpc.id,
      error: { code: JSONRPC_CODES.INVALID_PARAMS, message: `Invalid params: ${problem}` },
    });
  return ok({ id: rpc.id, method: rpc.method, body: body as Record<string, unknown> });
}
