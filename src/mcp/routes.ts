import { createHash, randomBytes } from "node:crypto";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { InitializeRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { sql } from "drizzle-orm";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { AgentIdentity, TokenService } from "../agents/token-service.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { AppError, asAppError, httpStatus } from "../errors.js";
import { bearerToken, requireAgent } from "../http/auth.js";
import { rawBodies } from "../http/raw-body.js";
import type { RouteDoc } from "../http/route-doc.js";
import { type McpDeps, mcpServerFor } from "./mcp-server.js";
import {
  endMcpSession,
  insertMcpSession,
  liveMcpSession,
  liveMcpSessionsOf,
  MCP_SESSION_TTL_MS,
  renewIfOld,
} from "./session-repo.js";
import type { McpStreams } from "./streams.js";

export interface McpRouteDeps extends McpDeps {
  tokens: Pick<TokenService, "authenticate">;
  bodyLimitBytes: number;
  db: Db;
  clock: Clock;
  streams: McpStreams;
}

const SESSION_HEADER = "mcp-session-id";

const DOC: RouteDoc = {
  tag: "mcp",
  summary: "The MCP endpoint (Streamable HTTP): provider operations as governed tools",
  description:
    "Model Context Protocol (revision 2025-11-25) over Streamable HTTP: every POST carries one JSON-RPC message and is answered with JSON. initialize opens a session (Mcp-Session-Id, stored: any instance serves it; 24 hours); a request naming an ended or unknown session is 404. tools/list gives the provider operations and butler_request_access; tools/call goes through the same pipeline as the REST and proxy paths.",
  auth: ["agent"],
  rawBody: { types: ["application/json"], description: "One JSON-RPC 2.0 message of MCP" },
  headers: [
    {
      name: "Mcp-Session-Id",
      description: "The session initialize gave (optional: requests without one are served too)",
    },
    { name: "MCP-Protocol-Version", description: "The protocol revision the client negotiated" },
    { name: "Accept", description: "application/json and text/event-stream, as MCP requires" },
  ],
  responses: {
    200: { description: "A JSON-RPC response" },
    202: { description: "A notification, accepted" },
    404: { description: "The session has ended or is unknown: initialize again", type: "application/json" },
  },
  errors: "json-rpc",
};

const STREAM_DOC: RouteDoc = {
  tag: "mcp",
  summary:
    "The session's server stream (SSE): notifications/tools/list_changed when the agent's tools change",
  auth: ["agent"],
  headers: [{ name: "Mcp-Session-Id", description: "The session initialize gave (required)" }],
  responses: {
    200: { description: "An SSE stream", type: "text/event-stream" },
    404: { description: "The session has ended or is unknown", type: "application/json" },
  },
  errors: "json-rpc",
};

const END_DOC: RouteDoc = {
  tag: "mcp",
  summary: "End an MCP session (its streams close; later requests naming it are 404)",
  auth: ["agent"],
  headers: [{ name: "Mcp-Session-Id", description: "The session to end (required)" }],
  responses: { 200: { description: "Ended", type: "application/json" } },
  errors: "json-rpc",
};

/** JSON-RPC error codes of the answers this route writes itself. */
const PARSE_ERROR = -32700;
const CONNECTION_CLOSED = -32000;
const INVALID_REQUEST = -32600;

/**
 * `/mcp`: the agent's Butler token on every request, then one MCP exchange per POST. A new server
 * and transport serve each request (nothing of the protocol is kept in memory between requests);
 * what a session needs (who opened it, whether it ended) is stored, so any instance serves any
 * session, and a session's stream (GET) is told of list changes from every instance.
 */
export async function registerMcpRoutes(app: FastifyInstance, deps: McpRouteDeps): Promise<void> {
  /** Calls waiting for a person in this server, by who made them and their JSON-RPC id: how to end each. */
  const waiting: Waiting = new Map();
  app.addHook("preClose", async () => {
    deps.streams.closeAll();
    // Calls waiting for a person end now (not made), so that stopping does not wait for people.
    for (const end of [...waiting.values()]) end();
  });
  await app.register(async (scope) => {
    // The body reaches the handler as text: a body that is not JSON is a JSON-RPC parse error.
    rawBodies(scope, deps.bodyLimitBytes);
    scope.setErrorHandler((error: Error & { statusCode?: number }, _req, reply) => {
      const app = asAppError(error);
      const given = app ? httpStatus(app.code) : (error.statusCode ?? 500);
      const status = given >= 400 && given < 600 ? given : 500;
      if (status >= 500 && !app) deps.log.error({ err: error }, "an MCP request failed");
      if (status === 401) reply.header("www-authenticate", 'Bearer realm="butler"');
      const message = app?.message ?? (status < 500 ? error.message : "internal error");
      return reply.code(status).send(rpcError(CONNECTION_CLOSED, message));
    });
    scope.post("/mcp", { config: { doc: DOC } }, (req, reply) => exchange(deps, waiting, req, reply));
    // No HEAD: it would open a stream nobody reads.
    scope.get("/mcp", { config: { doc: STREAM_DOC }, exposeHeadRoute: false }, (req, reply) =>
      stream(deps, req, reply),
    );
    scope.delete("/mcp", { config: { doc: END_DOC } }, (req, reply) => end(deps, req, reply));
  });
}

const hashOf = (id: string) => createHash("sha256").update(id).digest("hex");

/** The session a request names, if it names one: live and opened by this token, or a 404 to send. */
async function sessionOf(
  deps: McpRouteDeps,
  req: FastifyRequest,
  identity: AgentIdentity,
): Promise<{ hash: string } | { missing: true } | { ended: true }> {
  const header = req.headers[SESSION_HEADER];
  if (typeof header !== "string" || header === "") return { missing: true };
  const hash = hashOf(header);
  const now = deps.clock.now();
  const row = header.length <= 100 ? await liveMcpSession(deps.db, hash, now) : undefined;
  if (!row || row.tokenId !== identity.tokenId) return { ended: true };
  // In use: renewed past half its life (never by another token's requests).
  await renewIfOld(deps.db, row, now);
  return { hash };
}

const ENDED = "the MCP session has ended or is unknown: initialize again";

/** How many live sessions one token may hold (a client opens one per connection). */
const MAX_SESSIONS_PER_TOKEN = 100;

/**
 * Opens a session for an initialize request: its id goes back in the Mcp-Session-Id header. Fails
 * (429) when the token already holds MAX_SESSIONS_PER_TOKEN live ones.
 */
async function openSession(deps: McpRouteDeps, identity: AgentIdentity): Promise<string> {
  const now = deps.clock.now();
  const id = `mcp_${randomBytes(32).toString("base64url")}`;
  // Counted and inserted under a lock of the token's, so that parallel initializes cannot pass the limit.
  await deps.db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`mcp-sessions:${identity.tokenId}`}))`);
    if ((await liveMcpSessionsOf(tx, identity.tokenId, now)) >= MAX_SESSIONS_PER_TOKEN)
      throw new AppError(
        "TOO_MANY",
        `this token holds ${MAX_SESSIONS_PER_TOKEN} open MCP sessions: end one (DELETE /mcp) or let one expire`,
      );
    await insertMcpSession(tx, {
      idHash: hashOf(id),
      tokenId: identity.tokenId,
      agent: identity.agent,
      project: identity.project,
      createdAt: now,
      expiresAt: new Date(now.getTime() + MCP_SESSION_TTL_MS),
    });
  });
  return id;
}

async function stream(deps: McpRouteDeps, req: FastifyRequest, reply: FastifyReply) {
  const identity = await requireAgent(req, deps.tokens);
  if (!String(req.headers.accept ?? "").includes("text/event-stream"))
    return reply
      .code(406)
      .send(rpcError(INVALID_REQUEST, "the stream is text/event-stream: send Accept: text/event-stream"));
  const session = await sessionOf(deps, req, identity);
  if ("missing" in session)
    return reply
      .code(400)
      .send(
        rpcError(INVALID_REQUEST, "a stream belongs to a session: send the Mcp-Session-Id initialize gave"),
      );
  if ("ended" in session) return reply.code(404).send(rpcError(INVALID_REQUEST, ENDED));
  reply.hijack();
  deps.streams.open(reply.raw, identity, bearerToken(req)!, session.hash);
}

async function end(deps: McpRouteDeps, req: FastifyRequest, reply: FastifyReply) {
  const identity = await requireAgent(req, deps.tokens);
  const session = await sessionOf(deps, req, identity);
  if ("missing" in session)
    return reply.code(400).send(rpcError(INVALID_REQUEST, "send the Mcp-Session-Id of the session to end"));
  if ("ended" in session) return reply.code(404).send(rpcError(INVALID_REQUEST, ENDED));
  await endMcpSession(deps.db, session.hash, identity.tokenId, deps.clock.now());
  deps.streams.endSession(session.hash);
  return reply.code(200).send({ ended: true });
}

type Waiting = Map<string, () => void>;

async function exchange(deps: McpRouteDeps, waiting: Waiting, req: FastifyRequest, reply: FastifyReply) {
  const identity = await requireAgent(req, deps.tokens);
  let message: unknown;
  try {
    message = JSON.parse(typeof req.body === "string" ? req.body : "");
  } catch (e) {
    return reply.code(400).send(rpcError(PARSE_ERROR, `the body is not JSON: ${(e as Error).message}`));
  }
  // Only an initialize the transport will take opens a session (what it refuses stores nothing).
  const initialize = isInitialize(message) && acceptsBoth(req);
  const session = initialize ? undefined : await sessionOf(deps, req, identity);
  if (session && "ended" in session) return reply.code(404).send(rpcError(INVALID_REQUEST, ENDED));
  // A client's notifications/cancelled ends its call waiting here (the call it names, of its own).
  const sessionHash = session && "hash" in session ? session.hash : undefined;
  const cancelled = cancelledCall(message);
  if (cancelled !== undefined) waiting.get(waitKey(identity, sessionHash, cancelled))?.();
  const sessionId = initialize ? await openSession(deps, identity) : undefined;
  // Per-session budgets count per MCP session, named by a prefix of its id's hash.
  const label = session && "hash" in session ? `mcp:${session.hash.slice(0, 32)}` : undefined;
  const server = mcpServerFor(deps, identity, label);
  // JSON answers, except for a call whose client asked for progress: its answer is an SSE stream,
  // so that progress notifications can precede it (a call that waits for a person).
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: !wantsProgress(message),
  });
  // The SDK writes the answer itself; fastify leaves this response alone from here on.
  reply.hijack();
  reply.raw.setHeader("x-content-type-options", "nosniff");
  reply.raw.setHeader("cache-control", "no-store");
  if (sessionId) reply.raw.setHeader("mcp-session-id", sessionId);
  const close = () => {
    void transport.close();
    void server.close();
    // An aborted call is answered by no one: its response (a waiting call's stream) ends here.
    if (!reply.raw.writableEnded) reply.raw.end();
  };
  // Closing the transport aborts the call's handler (its signal): a client that goes away, cancels,
  // or a server that stops, ends a call waiting for a person without making it.
  const progressId = wantsProgress(message) ? (message as { id?: unknown }).id : undefined;
  const key =
    typeof progressId === "string" || typeof progressId === "number"
      ? waitKey(identity, sessionHash, progressId)
      : undefined;
  if (key !== undefined) waiting.set(key, close);
  reply.raw.on("close", () => {
    if (key !== undefined && waiting.get(key) === close) waiting.delete(key);
    close();
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req.raw, reply.raw, message);
  } catch (e) {
    deps.log.error({ err: e }, "an MCP request failed");
    if (!reply.raw.headersSent) reply.raw.writeHead(500, { "content-type": "application/json" });
    if (!reply.raw.writableEnded) reply.raw.end(JSON.stringify(rpcError(-32603, "internal error")));
  }
}

const waitKey = (identity: AgentIdentity, session: string | undefined, id: string | number) =>
  JSON.stringify([identity.tokenId, session ?? "", id]);

/** The request id a notifications/cancelled names, if the message is one. */
function cancelledCall(m: unknown): string | number | undefined {
  const n = m as { method?: unknown; id?: unknown; params?: { requestId?: unknown } } | null;
  if (typeof n !== "object" || n === null || n.method !== "notifications/cancelled" || n.id !== undefined)
    return undefined;
  const id = n.params?.requestId;
  return typeof id === "string" || typeof id === "number" ? id : undefined;
}

/** Whether the request accepts both answers MCP may give (else the transport refuses it, 406). */
const acceptsBoth = (req: FastifyRequest) => {
  const accept = String(req.headers.accept ?? "");
  return accept.includes("application/json") && accept.includes("text/event-stream");
};

const wantsProgress = (m: unknown) =>
  typeof m === "object" &&
  m !== null &&
  (m as { method?: unknown }).method === "tools/call" &&
  (m as { params?: { _meta?: { progressToken?: unknown } } }).params?._meta?.progressToken !== undefined;

/** A well-formed initialize request (JSON-RPC 2.0, an id, the params MCP requires): only it opens a session. */
const isInitialize = (m: unknown) => {
  if (typeof m !== "object" || m === null) return false;
  const r = m as { jsonrpc?: unknown; id?: unknown };
  return (
    r.jsonrpc === "2.0" &&
    (typeof r.id === "string" || typeof r.id === "number") &&
    InitializeRequestSchema.safeParse(m).success
  );
};

function rpcError(code: number, message: string) {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}
