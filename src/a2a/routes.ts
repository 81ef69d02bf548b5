import { createHash } from "node:crypto";
import {
  A2A_VERSION_HEADER,
  AGENT_CARD_PATH,
  CancelTaskRequest,
  DeleteTaskPushNotificationConfigRequest,
  formatSSEErrorEvent,
  formatSSEEvent,
  GetTaskPushNotificationConfigRequest,
  GetTaskRequest,
  ListTaskPushNotificationConfigsRequest,
  ListTasksRequest,
  SendMessageRequest,
  SSE_HEADERS,
  SubscribeToTaskRequest,
  TaskPushNotificationConfig,
} from "@a2a-js/sdk";
import { A2AError, RequestMalformedError, TaskNotFoundError } from "@a2a-js/sdk/errors";
import {
  type A2ARequestHandler,
  JsonRpcTransportHandler,
  ServerCallContext,
  validateVersion,
} from "@a2a-js/sdk/server";
import type { FastifyError, FastifyInstance, FastifyReply } from "fastify";
import type { TokenService } from "../agents/token-service.js";
import { asAppError, RETRY_AFTER_SECONDS } from "../errors.js";
import { bearerToken } from "../http/auth.js";
import { rawBodies } from "../http/raw-body.js";
import type { Logger } from "../logger.js";
import { type A2AService, AgentUser, bindSignal } from "./a2a-service.js";

export interface A2ARouteDeps {
  a2a: A2AService;
  tokens: Pick<TokenService, "authenticate">;
  log: Logger;
  bodyLimitBytes: number;
  /** Open SSE streams are ended when the server stops. */
  closing: AbortSignal;
  /** How often an idle stream gets an SSE comment, so that proxies keep it open. */
  keepAliveMs?: number;
}

const JSONRPC_CODES = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
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

/**
 * Where agent-written text in a request's params cannot be stored: a NUL (PostgreSQL text and
 * jsonb refuse it) or an unpaired surrogate (not Unicode; jsonb refuses its escape), in any
 * string or key (task, context, message and config ids, metadata, parts). Undefined when none.
 */
export function unstorableText(params: unknown): string | undefined {
  const bad = (s: string) => s.includes("\u0000") || !s.isWellFormed();
  const stack: [unknown, string][] = [[params, "params"]];
  while (stack.length > 0) {
    const [v, at] = stack.pop()!;
    if (typeof v === "string") {
      if (bad(v)) return at;
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => {
        stack.push([x, `${at}[${i}]`]);
      });
    } else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        const name = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k) ? `${at}.${k}` : `${at}[a key]`;
        if (bad(k)) return name;
        stack.push([x, name]);
      }
    }
  }
  return undefined;
}

type RpcError = { code: number; message: string; data?: unknown };
const rpcError = (id: unknown, error: RpcError) => ({ jsonrpc: "2.0" as const, id: id ?? null, error });

/**
 * Errors from the handler as the agent may see them: protocol errors as they are, the Butler's own
 * errors by their message (written for the caller), anything else as a bare "internal error"
 * (logged here with its details, which may name tables or hosts and are not the caller's business).
 */
/** Calls (by their context) that failed because the database could not be reached: answered 503. */
const unavailable = new WeakSet<object>();

function guard(h: A2ARequestHandler, log: Logger): A2ARequestHandler {
  const translate = (e: unknown, method: string, args: unknown[]): unknown => {
    if (e instanceof A2AError) return e;
    const known = asAppError(e);
    if (known?.code === "UNAVAILABLE") {
      // Not the agent's mistake and not a bug: the endpoint answers 503 with Retry-After.
      const ctx = args.find((a) => a instanceof ServerCallContext);
      if (ctx) unavailable.add(ctx);
      log.warn({ err: known.cause ?? known, method }, "A2A call failed: the database is unavailable");
      return new Error(known.message);
    }
    if (known) {
      if (known.code === "NOT_FOUND") return new TaskNotFoundError(known.message);
      if (
        [
          "INVALID_INPUT",
          "FORBIDDEN",
          "CONFLICT",
          "ALREADY_DECIDED",
          "EXPIRED",
          "SUPERSEDED",
          "PRECONDITION_FAILED",
        ].includes(known.code)
      )
        return new RequestMalformedError(known.message);
      if (known.code !== "INTERNAL") return new Error(known.message);
    }
    // A database error's message carries the statement's parameters (push credentials, say):
    // log what the driver said, not the query.
    log.error({ err: (e as { cause?: unknown }).cause ?? e, method }, "A2A call failed");
    return new Error("internal error; the server log has the details");
  };
  const wrapped: Record<string, unknown> = {};
  for (const name of Object.keys(h) as (keyof A2ARequestHandler)[]) {
    const fn = h[name] as (...args: unknown[]) => unknown;
    if (name === "sendMessageStream" || name === "resubscribe") {
      wrapped[name] = async function* (...args: unknown[]) {
        try {
          yield* fn(...args) as AsyncGenerator<unknown>;
        } catch (e) {
          throw translate(e, name, args);
        }
      };
    } else {
      wrapped[name] = async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          throw translate(e, name, args);
        }
      };
    }
  }
  return wrapped as unknown as A2ARequestHandler;
}

/**
 * The Butler's A2A face: the agent card at /.well-known/agent-card.json and the JSON-RPC endpoint
 * it names (/a2a). Calls need the agent's Butler token; the body is parsed here so that malformed
 * JSON, a wrong content type, an oversized body or a missing A2A-Version header get the protocol's
 * error codes rather than fastify's.
 */
export async function registerA2ARoutes(app: FastifyInstance, deps: A2ARouteDeps): Promise<void> {
  const handler = guard(deps.a2a.handler, deps.log);
  const jsonRpc = new JsonRpcTransportHandler(handler);
  const lastModified = new Date().toUTCString();
  const keepAliveMs = deps.keepAliveMs ?? 15_000;

  app.get(`/${AGENT_CARD_PATH}`, async (req, reply) => {
    const body = JSON.stringify(deps.a2a.cardJson());
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    reply
      .header("etag", etag)
      .header("last-modified", lastModified)
      .header("cache-control", "public, max-age=300")
      .header("content-type", "application/json; charset=utf-8");
    if (req.headers["if-none-match"] === etag) return reply.code(304).send();
    return reply.send(body);
  });

  await app.register(async (scope) => {
    // Every body reaches the handler as text: this route decides what is wrong with it.
    rawBodies(scope, deps.bodyLimitBytes);
    scope.setErrorHandler((e: FastifyError, _req, reply) => {
      if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE")
        return reply.code(413).send(
          rpcError(null, {
            code: JSONRPC_CODES.INVALID_REQUEST,
            message: `Invalid Request: the body is larger than ${deps.bodyLimitBytes} bytes`,
          }),
        );
      if (e.statusCode && e.statusCode < 500)
        return reply
          .code(e.statusCode)
          .send(rpcError(null, { code: JSONRPC_CODES.INVALID_REQUEST, message: e.message }));
      const known = asAppError(e);
      if (known?.code === "UNAVAILABLE")
        return reply
          .code(503)
          .header("retry-after", String(RETRY_AFTER_SECONDS))
          .send(rpcError(null, { code: JSONRPC_CODES.INTERNAL_ERROR, message: known.message }));
      deps.log.error({ err: e }, "A2A request failed");
      return reply
        .code(500)
        .send(rpcError(null, { code: JSONRPC_CODES.INTERNAL_ERROR, message: "internal error" }));
    });

    const endpoint = async (req: import("fastify").FastifyRequest, reply: FastifyReply) => {
      // Listening from the start: a client gone before its stream begins still ends the stream.
      const abort = new AbortController();
      reply.raw.on("close", () => abort.abort());
      const token = bearerToken(req);
      const identity = token ? await deps.tokens.authenticate(token) : undefined;
      if (!identity) {
        return reply
          .code(401)
          .header("www-authenticate", 'Bearer realm="butler"')
          .send(
            rpcError(null, {
              code: JSONRPC_CODES.INVALID_REQUEST,
              message: token
                ? "the token is not valid (unknown, malformed or revoked)"
                : "send the agent's Butler token as Authorization: Bearer <token>",
            }),
          );
      }
      const type = String(req.headers["content-type"] ?? "")
        .split(";", 1)[0]!
        .trim()
        .toLowerCase();
      if (type !== "application/json" && type !== "application/a2a+json") {
        return reply.send(
          rpcError(null, {
            code: JSONRPC_CODES.CONTENT_TYPE_NOT_SUPPORTED,
            message: `Content type not supported: ${type ? `"${type.slice(0, 100)}"` : "none"}; send application/json`,
          }),
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(String(req.body ?? ""));
      } catch (e) {
        return reply.send(
          rpcError(null, {
            code: JSONRPC_CODES.PARSE_ERROR,
            message: `Parse error: ${(e as Error).message}`,
          }),
        );
      }
      const rpc = body as { jsonrpc?: unknown; id?: unknown; method?: unknown };
      const idOk = (v: unknown) =>
        v === undefined || v === null || typeof v === "string" || Number.isInteger(v);
      if (
        typeof body !== "object" ||
        body === null ||
        Array.isArray(body) ||
        rpc.jsonrpc !== "2.0" ||
        typeof rpc.method !== "string" ||
        !idOk(rpc.id)
      ) {
        return reply.send(
          rpcError(idOk(rpc?.id) ? rpc?.id : null, {
            code: JSONRPC_CODES.INVALID_REQUEST,
            message: Array.isArray(body)
              ? "Invalid Request: batches are not supported; send one JSON-RPC request object"
              : 'Invalid Request: send {"jsonrpc": "2.0", "id": …, "method": …, "params": {…}}',
          }),
        );
      }
      const codec = PARAMS[rpc.method];
      if (codec) {
        const params = (body as { params?: unknown }).params;
        let problem: string | undefined;
        const unstorable = unstorableText(params);
        if (typeof params !== "object" || params === null || Array.isArray(params))
          problem = "params must be a JSON object";
        else if (unstorable)
          problem = `${unstorable} must be text without NUL characters or unpaired surrogates`;
        else {
          try {
            codec.fromJSON(params);
          } catch (e) {
            problem = `params do not have the shape of ${rpc.method}'s request (${(e as Error).message})`;
          }
        }
        if (problem)
          return reply.send(rpcError(rpc.id, { code: -32602, message: `Invalid params: ${problem}` }));
      }
      const requestedVersion = req.headers[A2A_VERSION_HEADER.toLowerCase()];
      const context = new ServerCallContext({
        user: new AgentUser(identity),
        requestedVersion: typeof requestedVersion === "string" && requestedVersion ? requestedVersion : "0.3",
      });
      try {
        validateVersion(context.requestedVersion, deps.a2a.card(), "JSONRPC");
      } catch (e) {
        return reply.send(rpcError(rpc.id, JsonRpcTransportHandler.mapToJSONRPCError(e)));
      }
      const onClosing = () => abort.abort();
      deps.closing.addEventListener("abort", onClosing, { once: true });
      bindSignal(context, abort.signal);
      try {
        const out = await jsonRpc.handle(body as Record<string, unknown>, context);
        const outage = () => reply.code(503).header("retry-after", String(RETRY_AFTER_SECONDS));
        if (!out || typeof (out as AsyncGenerator)[Symbol.asyncIterator] !== "function")
          return (unavailable.has(context) ? outage() : reply).send(out);
        const stream = out as AsyncGenerator<unknown, void, undefined>;
        // The first event decides between a plain error answer and a stream.
        let first: IteratorResult<unknown, void>;
        try {
          first = await stream.next();
        } catch (e) {
          return (unavailable.has(context) ? outage() : reply).send(
            rpcError(rpc.id, JsonRpcTransportHandler.mapToJSONRPCError(e)),
          );
        }
        reply.hijack();
        const res = reply.raw;
        if (res.destroyed) abort.abort();
        res.writeHead(200, SSE_HEADERS);
        // A client that went away mid-write is not the server's error: end the stream quietly.
        res.on("error", () => abort.abort());
        const keepAlive = setInterval(() => {
          if (!res.destroyed && !res.writableEnded) res.write(": keep-alive\n\n");
        }, keepAliveMs);
        keepAlive.unref();
        try {
          if (!first.done) res.write(formatSSEEvent(first.value));
          if (!first.done)
            for (;;) {
              const next = await stream.next();
              if (next.done || res.destroyed) break;
              res.write(formatSSEEvent(next.value));
            }
        } catch (e) {
          if (!res.destroyed)
            res.write(formatSSEErrorEvent(rpcError(rpc.id, JsonRpcTransportHandler.mapToJSONRPCError(e))));
        } finally {
          clearInterval(keepAlive);
          await stream.return(undefined).catch(() => {});
          res.end();
        }
        return reply;
      } finally {
        deps.closing.removeEventListener("abort", onClosing);
      }
    };
    scope.post("/a2a", endpoint);
    scope.post("/a2a/", endpoint);
  });
}
