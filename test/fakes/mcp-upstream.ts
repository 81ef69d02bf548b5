import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

/**
 * A small MCP server written with the SDK, standing for a real one behind Butler (a file store):
 * `read_file`, `write_file`, `search`, `whoami` (echoes the credential it was given, so tests can
 * check Butler never hands it to the agent) and `delete_all` (which Butler does not expose). Over
 * Streamable HTTP it demands `Authorization: Bearer <token>`; run as a program with `--stdio`, it
 * speaks stdio and takes its credential from FAKE_UPSTREAM_TOKEN. Its descriptions can be changed
 * while it runs (a "rug pull"), and it records every call it receives.
 */

export interface UpstreamCall {
  tool: string;
  args: Record<string, unknown>;
}

export interface FakeUpstreamState {
  /** Each tool's description, as tools/list gives it now. */
  descriptions: Record<string, string>;
  calls: UpstreamCall[];
}

export const DEFAULT_DESCRIPTIONS: Record<string, string> = {
  read_file: "Reads a file of the store and returns its text.",
  write_file: "Writes text to a file of the store.",
  search: "Searches the store for files containing the query.",
  whoami: "Says which credential the server was given.",
  delete_all: "Deletes every file of the store.",
  fail: "Always fails, with an error that quotes the credential it was given.",
  slow: "Answers after 400 ms.",
  shaped: "Returns a value its declared output schema's pattern does not match.",
};

/** An output schema whose pattern backtracks catastrophically on what `shaped` returns. */
export const SHAPED_OUTPUT_SCHEMA = {
  type: "object",
  properties: { value: { type: "string", pattern: "^(a+)+$" } },
  required: ["value"],
};

function build(state: FakeUpstreamState, credential: string): McpServer {
  const server = new McpServer({ name: "fake-files", version: "1.0.0" });
  const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });
  const record = (tool: string, args: Record<string, unknown>) => state.calls.push({ tool, args });
  server.registerTool(
    "read_file",
    { description: state.descriptions.read_file, inputSchema: { path: z.string() } },
    async (args) => {
      record("read_file", args);
      return text(`contents of ${args.path}`);
    },
  );
  server.registerTool(
    "write_file",
    { description: state.descriptions.write_file, inputSchema: { path: z.string(), content: z.string() } },
    async (args) => {
      record("write_file", args);
      return text(`wrote ${args.content.length} characters to ${args.path}`);
    },
  );
  server.registerTool(
    "search",
    {
      description: state.descriptions.search,
      inputSchema: {
        query: z.string().describe("what to look for\u202e\u{E0041}\u{E0042}\u00ad"),
        limit: z.number().int(),
      },
    },
    async (args) => {
      record("search", args);
      return {
        content: [{ type: "text" as const, text: `found 2 files for ${args.query}` }],
        structuredContent: { count: 2 },
      };
    },
  );
  server.registerTool("whoami", { description: state.descriptions.whoami, inputSchema: {} }, async () => {
    record("whoami", {});
    return text(`I was called with the credential ${credential}`);
  });
  // Answered below with a JSON-RPC error (not a tool result) quoting the credential.
  server.registerTool("fail", { description: state.descriptions.fail, inputSchema: {} }, async () =>
    text(""),
  );
  server.registerTool("slow", { description: state.descriptions.slow, inputSchema: {} }, async () => {
    record("slow", {});
    await new Promise((resolve) => setTimeout(resolve, 400));
    return text("done, slowly");
  });
  // Declared with an output schema in tools/list only (below): the server itself does not check it.
  server.registerTool("shaped", { description: state.descriptions.shaped, inputSchema: {} }, async () => {
    record("shaped", {});
    return {
      content: [{ type: "text" as const, text: "shaped" }],
      structuredContent: { value: `${"a".repeat(22)}!` },
    };
  });
  const handlers = (server.server as unknown as { _requestHandlers: Map<string, Handler> })._requestHandlers;
  const list = handlers.get("tools/list")!;
  handlers.set("tools/list", async (req, extra) => {
    const r = (await list(req, extra)) as { tools: { name: string; outputSchema?: unknown }[] };
    for (const t of r.tools) if (t.name === "shaped") t.outputSchema = SHAPED_OUTPUT_SCHEMA;
    return r;
  });
  const callTool = handlers.get("tools/call")!;
  handlers.set("tools/call", async (req, extra) => {
    if ((req as { params: { name: string } }).params.name !== "fail") return callTool(req, extra);
    record("fail", {});
    throw new McpError(ErrorCode.InternalError, `bad auth header Bearer ${credential}`);
  });
  server.registerTool(
    "delete_all",
    { description: state.descriptions.delete_all, inputSchema: {} },
    async () => {
      record("delete_all", {});
      return text("deleted everything");
    },
  );
  return server;
}

type Handler = (req: unknown, extra: unknown) => Promise<unknown>;

export interface FakeUpstream {
  url: string;
  state: FakeUpstreamState;
  close(): Promise<void>;
}

/** The fake over Streamable HTTP on loopback (stateless: a server per request, built from `state`). */
export async function startFakeMcpUpstream(token: string): Promise<FakeUpstream> {
  const state: FakeUpstreamState = { descriptions: { ...DEFAULT_DESCRIPTIONS }, calls: [] };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"unauthorized"}');
      return;
    }
    const server = build(state, token);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
  const http = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    state,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}

/** Where this file is, to start it as a stdio server (`node --import tsx <file> --stdio`). */
export const FAKE_UPSTREAM_FILE = fileURLToPath(import.meta.url);

if (process.argv[1] === FAKE_UPSTREAM_FILE && process.argv.includes("--stdio")) {
  const state: FakeUpstreamState = { descriptions: { ...DEFAULT_DESCRIPTIONS }, calls: [] };
  await build(state, process.env.FAKE_UPSTREAM_TOKEN ?? "(none)").connect(new StdioServerTransport());
}
