import { createHash } from "node:crypto";
import {
  A2A_VERSION_HEADER,
  AGENT_CARD_PATH,
  formatSSEErrorEvent,
  formatSSEEvent,
  SSE_HEADERS,
} from "@a2a-js/sdk";
import { JsonRpcTransportHandler, ServerCallContext, validateVersion } from "@a2a-js/sdk/server";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { AgentIdentity, TokenService } from "../agents/token-service.js";
import { asAppError, RETRY_AFTER_SECONDS } from "../errors.js";
import { bearerToken } from "../http/auth.js";
import { rawBodies } from "../http/raw-body.js";
import type { Logger } from "../logger.js";
import type { A2AService } from "./a2a-service.js";
import { JSONRPC_CODES, parseCall, type RpcId, rpcError } from "./json-rpc.js";
import { guard, wasUnavailable } from "./rpc-guard.js";
import { AgentUser, bindSignal } from "./sdk-handler.js";

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

/** The agent card, with an ETag so that agents re-reading it get 304 while it is unchanged. */
function registerCard(app: FastifyInstance, a2a: A2AService): void {
  const lastModified = new Date().toUTCString();
  const doc = {
    tag: "a2a",
    summary: "The A2A agent card (with an ETag: 304 while unchanged)",
    auth: [],
    headers: [{ name: "If-None-Match", description: "The card's ETag, for a 304" }],
    responses: { 200: { description: "The agent card" }, 304: { description: "Unchanged", type: "none" } },
  } as const;
  app.get(`/${AGENT_CARD_PATH}`, { config: { doc } }, async (req, reply) => {
    const body = JSON.stringify(a2a.cardJson());
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    reply
      .header("etag", etag)
      .header("last-modified", lastModified)
      .header("cache-control", "public, max-age=300")
      .header("content-type", "application/json; charset=utf-8");
    if (req.headers["if-none-match"] === etag) return reply.code(304).send();
    return reply.send(body);
  });
}

/** Errors fastify raises before the endpoint runs (an oversized body, say), as JSON-RPC errors. */
function rpcErrorHandler(deps: A2ARouteDeps) {
  return (e: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
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
  };
}

/** The agent a call's bearer token names; undefined after answering 401. */
async function authenticate(
  req: FastifyRequest,
  reply: FastifyReply,
  tokens: A2ARouteDeps["tokens"],
): Promise<AgentIdentity | undefined> {
  const token = bearerToken(req);
  const identity = token ? await tokens.authenticate(token) : undefined;
  if (identity) return identity;
  reply
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
  return undefined;
}

/**
 * Sends a stream's events as SSE, after its first event was read. Runs to the stream's end even
 * when the client has gone: the events are the task's, and the stream ends when `abort` fires.
 */
async function streamSse(
  reply: FastifyReply,
  stream: AsyncGenerator<unknown, void, undefined>,
  first: IteratorResult<unknown, void>,
  o: { id: RpcId; abort: AbortController; keepAliveMs: number },
): Promise<FastifyReply> {
  reply.hijack();
  const res = reply.raw;
  if (res.destroyed) o.abort.abort();
  res.writeHead(200, SSE_HEADERS);
  // A client that went away mid-write is not the server's error: end the stream quietly.
  res.on("error", () => o.abort.abort());
  const keepAlive = setInterval(() => {
    if (!res.destroyed && !res.writableEnded) res.write(": keep-alive\n\n");
  }, o.keepAliveMs);
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
      res.write(formatSSEErrorEvent(rpcError(o.id, JsonRpcTransportHandler.mapToJSONRPCError(e))));
  } finally {
    clearInterval(keepAlive);
    await stream.return(undefined).catch(() => {});
    res.end();
  }
  return reply;
}

/**
 * Hands a checked call to the SDK's JSON-RPC handler and answers: a plain answer, or an SSE
 * stream once its first event is in (an error before it is a plain error answer). A call that
 * failed for want of the database is answered 503 with Retry-After.
 */
async function answer(
  reply: FastifyReply,
  jsonRpc: JsonRpcTransportHandler,
  call: { id: RpcId; body: Record<string, unknown>; context: ServerCallContext },
  o: { abort: AbortController; keepAliveMs: number },
): Promise<FastifyReply> {
  const out = await jsonRpc.handle(call.body, call.context);
  const replyOf = () =>
    wasUnavailable(call.context) ? reply.code(503).header("retry-after", String(RETRY_AFTER_SECONDS)) : reply;
  if (!out || typeof (out as AsyncGenerator)[Symbol.asyncIterator] !== "function") return replyOf().send(out);
  const stream = out as AsyncGenerator<unknown, void, undefined>;
  // The first event decides between a plain error answer and a stream.
  let first: IteratorResult<unknown, void>;
  try {
    first = await stream.next();
  } catch (e) {
    return replyOf().send(rpcError(call.id, JsonRpcTransportHandler.mapToJSONRPCError(e)));
  }
  return streamSse(reply, stream, first, { id: call.id, ...o });
}

/**
 * The Butler's A2A face: the agent card at /.well-known/agent-card.json and the JSON-RPC endpoint
 * it names (/a2a). Calls need the agent's Butler token; the body is parsed here so that malformed
 * JSON, a wrong content type, an oversized body or a missing A2A-Version header get the protocol's
 * error codes rather than fastify's.
 */
export async function registerA2ARoutes(app: FastifyInstance, deps: A2ARouteDeps): Promise<void> {
  const jsonRpc = new JsonRpcTransportHandler(guard(deps.a2a.handler, deps.log));
  const keepAliveMs = deps.keepAliveMs ?? 15_000;
  registerCard(app, deps.a2a);

  const endpoint = async (req: FastifyRequest, reply: FastifyReply) => {
    // Listening from the start: a client gone before its stream begins still ends the stream.
    const abort = new AbortController();
    reply.raw.on("close", () => abort.abort());
    const identity = await authenticate(req, reply, deps.tokens);
    if (!identity) return reply;
    const call = parseCall(req.headers["content-type"], String(req.body ?? ""));
    if (!call.ok) return reply.send(rpcError(call.error.id, call.error.error));
    const { id, body } = call.value;
    const requestedVersion = req.headers[A2A_VERSION_HEADER.toLowerCase()];
    const context = new ServerCallContext({
      user: new AgentUser(identity),
      requestedVersion: typeof requestedVersion === "string" && requestedVersion ? requestedVersion : "0.3",
    });
    try {
      validateVersion(context.requestedVersion, deps.a2a.card(), "JSONRPC");
    } catch (e) {
      return reply.send(rpcError(id, JsonRpcTransportHandler.mapToJSONRPCError(e)));
    }
    const onClosing = () => abort.abort();
    deps.closing.addEventListener("abort", onClosing, { once: true });
    bindSignal(context, abort.signal);
    try {
      return await answer(reply, jsonRpc, { id, body, context }, { abort, keepAliveMs });
    } finally {
      deps.closing.removeEventListener("abort", onClosing);
    }
  };

  await app.register(async (scope) => {
    // Every body reaches the handler as text: this route decides what is wrong with it.
    rawBodies(scope, deps.bodyLimitBytes);
    scope.setErrorHandler(rpcErrorHandler(deps));
    const doc = {
      tag: "a2a",
      summary: "The A2A JSON-RPC endpoint (SendMessage, SendStreamingMessage, GetTask, ListTasks, …)",
      description:
        "A2A protocol v1.0 over JSON-RPC 2.0; streaming methods answer as Server-Sent Events. The protocol's field names are the A2A specification's (camelCase); what the Butler puts inside them (the grant artifact's data, metadata.butler) is snake_case, as in the rest of the API.",
      auth: ["agent"],
      rawBody: { types: ["application/json"], description: "A JSON-RPC 2.0 request" },
      headers: [
        {
          name: "A2A-Version",
          description:
            "The protocol version the client speaks: 1.0 (absent means 0.3, which is refused with -32009)",
        },
      ],
      responses: {
        200: { description: "A JSON-RPC response, or an SSE stream for streaming methods" },
      },
      errors: "json-rpc",
    } as const;
    scope.post("/a2a", { config: { doc } }, endpoint);
    scope.post("/a2a/", { config: { doc } }, endpoint);
  });
}
