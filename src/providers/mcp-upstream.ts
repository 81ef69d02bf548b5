import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ErrorCode, McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { JsonSchemaValidator, jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import type { Clock } from "../clock.js";
import type { Logger } from "../logger.js";
import { definitionOf, hashOf, type McpPins, type Pin, type ToolDefinition } from "./mcp-pins.js";
import type { Operation, ProviderSpec } from "./spec.js";
import { type Exchange, withoutCredential } from "./upstream-exchange.js";
import { authHeader } from "./upstream-request.js";

/**
 * Butler as an MCP client of the servers behind it (mcp_servers/*.yaml): one connection per server,
 * opened when first needed and opened again after it closes. Each server's tool list is read at
 * connection, when the server says it changed, and when older than its `recheck_seconds`; every
 * exposed tool's definition is checked against the pinned one (mcp-pins.ts), and a tool whose
 * definition changed is neither shown as changed nor called until a person approves it.
 */

/** Where a tool stands for a call. */
export type ToolState =
  | { kind: "ok"; pinned: ToolDefinition }
  /** The upstream's definition is not the pinned one: refused until a person approves it. */
  | { kind: "changed"; pinnedHash: string; hash: string }
  /** The upstream could not be reached, or does not offer the tool: the call cannot go out. */
  | { kind: "unavailable"; reason: string };

export interface McpUpstreamDeps {
  pins: McpPins;
  clock: Clock;
  log: Logger;
  /** The credential of that name (environment variable, then the vault), or undefined. */
  credential: (name: string) => Promise<string | undefined>;
  version: string;
  /** How long connecting and listing may take (ms; default 10 s). */
  connectTimeoutMs?: number;
  /** The largest answer taken from an HTTP upstream (bytes; default 10 MiB). */
  maxAnswerBytes?: number;
}

interface ServerState {
  client: Promise<{ client: Client; credentials: string[] }> | undefined;
  /** When the tool list was last read (clock ms); 0: never, or a refresh is due. */
  listedAt: number;
  listing: Promise<void> | undefined;
  /** Per exposed tool: the hash of what the upstream offers now (undefined: not offered), and the pin. */
  tools: Map<string, { hash: string | undefined; pin: Pin | undefined }>;
  /** Why the last listing failed, when it did. */
  failure: string | undefined;
  /** After a failed listing: not tried again before this time (clock ms), so that calls fail fast. */
  retryAt: number;
  /** Counts what makes a listing out of date (a list_changed, a closed connection) while it runs. */
  generation: number;
}

/** How long a server whose listing failed is left alone before it is tried again. */
const RETRY_MS = 5_000;

/** Whether the server's tool list should be read (again) now. */
function isDue(deps: McpUpstreamDeps, u: Upstream): boolean {
  const now = deps.clock.now().getTime();
  return now >= u.st.retryAt && now - u.st.listedAt >= u.spec.mcp!.recheckMs;
}

/** One upstream server: its spec and what this instance knows of it. */
interface Upstream {
  spec: ProviderSpec;
  st: ServerState;
}

export function createMcpUpstreams(deps: McpUpstreamDeps, servers: readonly ProviderSpec[]) {
  const upstreams = new Map<string, Upstream>(
    servers
      .filter((s) => s.mcp)
      .map((spec) => [
        spec.name,
        {
          spec,
          st: {
            client: undefined,
            listedAt: 0,
            listing: undefined,
            tools: new Map(),
            failure: undefined,
            retryAt: 0,
            generation: 0,
          },
        },
      ]),
  );
  let closed = false;
  const of = (spec: ProviderSpec): Upstream => {
    const u = upstreams.get(spec.name);
    if (!u) throw new Error(`${spec.name} is not an MCP server behind Butler`);
    return u;
  };

  return {
    servers: () => [...upstreams.keys()],

    /** Where the tool stands for a call (the tool list read again first when it is due). */
    state: (spec: ProviderSpec, op: Operation) => toolState(deps, of(spec), op),

    /**
     * The tools as shown to agents: the pinned definition, and whether the upstream's differs
     * (no network: what the last listing found). `refreshDue` reads the lists that are due first.
     */
    shown(spec: ProviderSpec, op: Operation): { definition: ToolDefinition; changed: boolean } | undefined {
      const t = upstreams.get(spec.name)?.st.tools.get(op.name);
      if (!t?.pin) return undefined;
      return { definition: t.pin.pinned, changed: t.hash !== undefined && t.hash !== t.pin.pinnedHash };
    },

    /** Reads every tool list that is due (each bounded by the connect timeout; failures are logged). */
    async refreshDue(): Promise<void> {
      await Promise.all(
        [...upstreams.values()]
          .filter((u) => isDue(deps, u))
          .map((u) => refresh(deps, u).catch(() => undefined)),
      );
    },

    /**
     * One `tools/call`, as an exchange (the pipeline's audit lines and answer are made from it): the
     * result as JSON, or why there is none. Sent only when the tool's definition is the pinned one.
     */
    call: (spec: ProviderSpec, op: Operation, args: Record<string, unknown>) =>
      callTool(deps, of(spec), op, args),

    /** Drops every connection (credentials changed): the next use connects with the credentials of now. */
    async reconnect(): Promise<void> {
      await Promise.all([...upstreams.values()].map(({ st }) => disconnect(st)));
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await Promise.all([...upstreams.values()].map(({ st }) => disconnect(st)));
    },
  };
}

async function transportOf(
  deps: McpUpstreamDeps,
  spec: ProviderSpec,
): Promise<{ transport: Transport; credentials: string[] }> {
  const c = spec.mcp!.connection;
  const credentials: string[] = [];
  if (c.transport === "http") {
    const headers: Record<string, string> = {};
    if (spec.auth) {
      const credential = await deps.credential(spec.auth.credential);
      if (!credential)
        throw new Error(
          `no credential ${spec.auth.credential}: set the environment variable (or ${spec.auth.credential}_FILE) or put it in the vault`,
        );
      const [name, value] = authHeader(spec.auth, credential);
      headers[name] = value;
      credentials.push(credential);
    }
    const transport = new StreamableHTTPClientTransport(new URL(c.url), {
      requestInit: { headers, redirect: "error" },
      fetch: limitedFetch(deps.maxAnswerBytes ?? 10 * 1024 * 1024),
    });
    return { transport, credentials };
  }
  const childEnv: Record<string, string> = { ...getDefaultEnvironment(), ...c.env };
  for (const [variable, name] of Object.entries(c.credentialEnv)) {
    const credential = await deps.credential(name);
    if (!credential)
      throw new Error(
        `no credential ${name} for ${variable}: set the environment variable or put it in the vault`,
      );
    childEnv[variable] = credential;
    credentials.push(credential);
  }
  // The child's stderr is not passed on: it could print its credentials.
  const transport = new StdioClientTransport({
    command: c.command,
    args: c.args,
    env: childEnv,
    cwd: c.cwd,
    stderr: "ignore",
    // The same cap as an HTTP upstream's answers: a larger message closes the connection.
    maxBufferSize: deps.maxAnswerBytes ?? 10 * 1024 * 1024,
  });
  return { transport, credentials };
}

/** The server's connection, opened when first needed and again after it closed. */
function connected(deps: McpUpstreamDeps, u: Upstream): Promise<{ client: Client; credentials: string[] }> {
  const { st } = u;
  if (st.client) return st.client;
  const pending: ServerState["client"] = (async () => {
    const { transport, credentials } = await transportOf(deps, u.spec);
    // Butler passes results on and checks nothing in them: the upstream's output schemas are not
    // compiled or run (a hostile pattern could stall the event loop).
    const client = new Client(
      { name: "butler", version: deps.version },
      { jsonSchemaValidator: NO_VALIDATION },
    );
    // The list is read again before its next use (not at once: an upstream sending notifications
    // in a loop costs nothing until someone uses it), and a listing under way is out of date.
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      st.generation++;
      st.listedAt = 0;
    });
    client.onclose = () => {
      if (st.client === pending) st.client = undefined;
      st.generation++;
      st.listedAt = 0;
    };
    try {
      await client.connect(transport, { timeout: deps.connectTimeoutMs ?? 10_000 });
    } catch (e) {
      await client.close().catch(() => undefined);
      // The upstream's words may quote what it was sent.
      throw new Error(scrub(messageOf(e), credentials));
    }
    return { client, credentials };
  })().catch((e: unknown) => {
    if (st.client === pending) st.client = undefined;
    throw e;
  });
  st.client = pending;
  return pending;
}

/** Closes the server's connection (a stdio child is stopped); the next use opens a new one. */
async function disconnect(st: ServerState): Promise<void> {
  const c = await st.client?.catch(() => undefined);
  st.client = undefined;
  st.generation++;
  st.listedAt = 0;
  await c?.client.close().catch(() => undefined);
}

/** Reads the server's tool list and checks each exposed tool against its pin (one listing at a time). */
function refresh(deps: McpUpstreamDeps, u: Upstream): Promise<void> {
  const { spec, st } = u;
  st.listing ??= (async () => {
    const generation = st.generation;
    let credentials: string[] = [];
    try {
      const conn = await connected(deps, u);
      credentials = conn.credentials;
      const { client } = conn;
      const offered = new Map<string, { definition: ToolDefinition; hash: string }>();
      let cursor: string | undefined;
      for (let page = 0; page < 50; page++) {
        const r = await client.listTools(cursor ? { cursor } : {}, {
          timeout: deps.connectTimeoutMs ?? 10_000,
        });
        for (const t of r.tools)
          if (spec.operations.has(t.name))
            offered.set(t.name, { definition: definitionOf(t), hash: hashOf(t) });
        cursor = r.nextCursor;
        if (!cursor) break;
      }
      for (const name of spec.operations.keys()) {
        const seen = offered.get(name);
        const pin = seen
          ? await deps.pins.observe(spec.name, name, seen.definition, seen.hash)
          : await deps.pins.get(spec.name, name);
        st.tools.set(name, { hash: seen?.hash, pin });
      }
      // Told of a change (or reconnected) while listing: read again before the next use.
      st.listedAt = st.generation === generation ? deps.clock.now().getTime() : 0;
      st.failure = undefined;
      st.retryAt = 0;
    } catch (e) {
      st.failure = scrub(messageOf(e), credentials);
      st.retryAt = deps.clock.now().getTime() + RETRY_MS;
      // A connection that failed to list (a session the upstream forgot, a hung child) is not reused.
      await disconnect(st);
      deps.log.warn({ server: spec.name, reason: st.failure }, "the MCP server's tools could not be listed");
      throw e;
    } finally {
      st.listing = undefined;
    }
  })();
  return st.listing;
}

async function toolState(deps: McpUpstreamDeps, u: Upstream, op: Operation): Promise<ToolState> {
  const { spec, st } = u;
  if (isDue(deps, u)) await refresh(deps, u).catch(() => undefined);
  if (st.listedAt === 0)
    return {
      kind: "unavailable",
      reason: `could not reach MCP server ${spec.name}: ${st.failure ?? "not connected"}`,
    };
  const t = st.tools.get(op.name);
  if (!t?.hash || !t.pin)
    return { kind: "unavailable", reason: `MCP server ${spec.name} does not offer the tool ${op.name} now` };
  if (t.pin.pinnedHash === t.hash) return { kind: "ok", pinned: t.pin.pinned };
  // Approved (on any instance, or by the CLI on the database) since this instance read the pin?
  const pin = await deps.pins.get(spec.name, op.name);
  if (pin) t.pin = pin;
  if (pin?.pinnedHash === t.hash) return { kind: "ok", pinned: pin.pinned };
  return { kind: "changed", pinnedHash: t.pin.pinnedHash, hash: t.hash };
}

async function callTool(
  deps: McpUpstreamDeps,
  u: Upstream,
  op: Operation,
  args: Record<string, unknown>,
): Promise<Exchange & { credentials: string[] }> {
  const { spec } = u;
  const started = performance.now();
  /** No answer; `sent`: the call went out (it may have run), so nothing it holds is given back. */
  const failed = (status: 502 | 504, reason: string, credentials: string[] = [], sent = false) => ({
    res: undefined,
    failure: { status, reason: scrub(reason, credentials) },
    attempts: 1,
    latencyMs: performance.now() - started,
    mayHaveRun: sent,
    credentials,
  });
  const s = await toolState(deps, u, op);
  if (s.kind === "unavailable") return failed(502, s.reason);
  if (s.kind === "changed")
    return failed(502, `the definition of ${spec.name} ${op.name} changed before the call went out`);
  let conn: { client: Client; credentials: string[] };
  try {
    conn = await connected(deps, u);
  } catch (e) {
    return failed(502, `could not reach MCP server ${spec.name}: ${messageOf(e)}`);
  }
  try {
    const result = await conn.client.callTool({ name: op.name, arguments: args }, undefined, {
      timeout: op.timeoutMs,
      maxTotalTimeout: op.timeoutMs,
    });
    return {
      res: {
        status: 200,
        headers: { "content-type": "application/json" },
        body: Buffer.from(JSON.stringify(result)),
      },
      failure: undefined,
      attempts: 1,
      latencyMs: performance.now() - started,
      credentials: conn.credentials,
    };
  } catch (e) {
    // A timeout or a transport error (not the upstream's own JSON-RPC error): the connection is not reused.
    if (!(e instanceof McpError) || e.code === ErrorCode.RequestTimeout) await disconnect(u.st);
    if (e instanceof McpError && e.code === ErrorCode.RequestTimeout)
      return failed(504, `${spec.name} did not answer within ${op.timeoutMs} ms`, conn.credentials, true);
    return failed(502, `${spec.name} ${op.name} failed: ${messageOf(e)}`, conn.credentials, true);
  }
}

export type McpUpstreams = ReturnType<typeof createMcpUpstreams>;

/** `text` without any of the credentials (as withoutCredential scrubs an answer). */
function scrub(text: string, credentials: readonly string[]): string {
  if (credentials.length === 0) return text;
  return credentials.reduce<Buffer>((b, c) => withoutCredential(b, c), Buffer.from(text)).toString("utf8");
}

/** The client's output-schema validator: accepts everything (Butler checks no results). */
const NO_VALIDATION: jsonSchemaValidator = {
  getValidator<T>(): JsonSchemaValidator<T> {
    return (input) => ({ valid: true, data: input as T, errorMessage: undefined });
  },
};

function messageOf(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > 300 ? `${m.slice(0, 300)}…` : m;
}

/** fetch, with each answer's body cut off (an error) past `max` bytes. */
function limitedFetch(max: number) {
  return async (url: string | URL, init?: RequestInit): Promise<Response> => {
    const res = await fetch(url, init);
    if (!res.body) return res;
    let seen = 0;
    const limited = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          seen += chunk.byteLength;
          if (seen > max) controller.error(new Error(`the MCP server's answer is larger than ${max} bytes`));
          else controller.enqueue(chunk);
        },
      }),
    );
    return new Response(limited, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
