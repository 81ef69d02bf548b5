import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { TokenService } from "../agents/token-service.js";
import { asAppError, httpStatus } from "../errors.js";
import { requireAgent } from "../http/auth.js";
import { rawBodies } from "../http/raw-body.js";
import type { RouteDoc } from "../http/route-doc.js";
import { type McpDeps, mcpServerFor } from "./mcp-server.js";

export interface McpRouteDeps extends McpDeps {
  tokens: Pick<TokenService, "authenticate">;
  bodyLimitBytes: number;
}

const DOC: RouteDoc = {
  tag: "mcp",
  summary: "The MCP endpoint (Streamable HTTP, stateless): provider operations as governed tools",
  description:
    "Model Context Protocol (revision 2025-11-25) over Streamable HTTP, without sessions: every POST carries one JSON-RPC message and is answered with JSON. tools/list gives the provider operations of the agent's project and butler_request_access; tools/call goes through the same pipeline as the REST and proxy paths. GET and DELETE (server streams, sessions) are answered 405.",
  auth: ["agent"],
  rawBody: { types: ["application/json"], description: "One JSON-RPC 2.0 message of MCP" },
  headers: [
    { name: "MCP-Protocol-Version", description: "The protocol revision the client negotiated" },
    { name: "Accept", description: "application/json and text/event-stream, as MCP requires" },
  ],
  responses: {
    200: { description: "A JSON-RPC response" },
    202: { description: "A notification, accepted" },
  },
  errors: "json-rpc",
};

const NO_STREAMS_DOC: RouteDoc = {
  tag: "mcp",
  summary: "Not offered: the MCP endpoint keeps no sessions or server streams (405)",
  auth: [],
  responses: { 405: { description: "Method not allowed", type: "application/json" } },
  errors: "json-rpc",
};

/** JSON-RPC error codes of the answers this route writes itself. */
const PARSE_ERROR = -32700;
const CONNECTION_CLOSED = -32000;

/**
 * `POST /mcp`: the agent's Butler token, then one stateless MCP exchange. A new server and
 * transport serve each request (nothing is kept between requests), so any instance can answer any
 * request; the identity comes from the token of that request only.
 */
export async function registerMcpRoutes(app: FastifyInstance, deps: McpRouteDeps): Promise<void> {
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
    scope.post("/mcp", { config: { doc: DOC } }, (req, reply) => exchange(deps, req, reply));
    const refuse = async (_req: FastifyRequest, reply: FastifyReply) =>
      reply
        .code(405)
        .header("allow", "POST")
        .send(rpcError(CONNECTION_CLOSED, "this MCP endpoint is stateless: send each message with POST"));
    scope.get("/mcp", { config: { doc: NO_STREAMS_DOC } }, refuse);
    scope.delete("/mcp", { config: { doc: NO_STREAMS_DOC } }, refuse);
  });
}

async function exchange(deps: McpRouteDeps, req: FastifyRequest, reply: FastifyReply) {
  const identity = await requireAgent(req, deps.tokens);
  let message: unknown;
  try {
    message = JSON.parse(typeof req.body === "string" ? req.body : "");
  } catch (e) {
    return reply.code(400).send(rpcError(PARSE_ERROR, `the body is not JSON: ${(e as Error).message}`));
  }
  const server = mcpServerFor(deps, identity);
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  // The SDK writes the answer itself; fastify leaves this response alone from here on.
  reply.hijack();
  reply.raw.setHeader("x-content-type-options", "nosniff");
  reply.raw.setHeader("cache-control", "no-store");
  reply.raw.on("close", () => {
    void transport.close();
    void server.close();
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

function rpcError(code: number, message: string) {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}
