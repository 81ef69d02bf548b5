import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { variableNamed } from "../../config.js";
import { type Parsed, required, UsageError } from "../command.js";
import type { CliIo } from "../output.js";

/** JSON-RPC error codes the bridge answers with itself. */
const PARSE_ERROR = -32700;
const CONNECTION_CLOSED = -32000;

/** The MCP endpoint a `--url` names: the server's address (`/mcp` is added) or the endpoint itself. */
export function endpointOf(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(
      `--url must be an http(s) URL such as http://127.0.0.1:8080, not '${url.slice(0, 200)}'`,
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new UsageError(`--url must be an http(s) URL such as http://127.0.0.1:8080 (it has ${u.protocol})`);
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/mcp";
  return u;
}

/**
 * `butler mcp stdio`: for MCP clients that can only launch a process. Each JSON-RPC message read
 * from standard input (one per line) is sent to Butler's `/mcp` over Streamable HTTP with the
 * agent's token, and each message Butler answers is written to standard output, one per line.
 * The token is read from an environment variable, never from argv. A message that cannot be
 * delivered (the server unreachable, the token refused) is answered with a JSON-RPC error for its
 * request, so the client hears why instead of waiting. Ends when standard input ends.
 */
export async function mcpStdio(a: Parsed, io: CliIo): Promise<number> {
  const endpoint = endpointOf(required(a.values, "url"));
  const tokenVar = (a.values["token-env"] as string | undefined) ?? "BUTLER_TOKEN";
  const token = variableNamed(io.env, tokenVar);
  if (!token)
    throw new UsageError(
      `the environment variable ${tokenVar} (--token-env) must hold the agent's Butler token`,
    );
  const write = (m: JSONRPCMessage) => io.stdout.write(serializeMessage(m));
  const upstream = new StreamableHTTPClientTransport(endpoint, {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  upstream.onmessage = (m) => {
    // After initialize, every request carries the negotiated protocol version, as MCP asks.
    const version = (m as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
    if (typeof version === "string") upstream.setProtocolVersion(version);
    write(m);
  };
  upstream.onerror = (e) => io.stderr.write(`butler mcp stdio: ${e.message}\n`);
  await upstream.start();
  const buffer = new ReadBuffer();
  // Messages are sent as they come, without waiting for each answer: a long call must not hold
  // back pings, cancellations or other calls.
  const sending = new Set<Promise<void>>();
  for await (const chunk of io.stdin ?? process.stdin) {
    buffer.append(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = buffer.readMessage();
      } catch (e) {
        write(rpcError(null, PARSE_ERROR, `not a JSON-RPC message: ${(e as Error).message.slice(0, 300)}`));
        continue;
      }
      if (message === null) break;
      const sent = deliver(upstream, message, write);
      sending.add(sent);
      void sent.finally(() => sending.delete(sent));
    }
  }
  await Promise.all(sending);
  await upstream.close();
  return 0;
}

async function deliver(
  upstream: StreamableHTTPClientTransport,
  message: JSONRPCMessage,
  write: (m: JSONRPCMessage) => void,
): Promise<void> {
  try {
    await upstream.send(message);
  } catch (e) {
    const id = (message as { id?: string | number }).id;
    const isRequest = "method" in message && id !== undefined;
    if (isRequest)
      write(rpcError(id, CONNECTION_CLOSED, `Butler did not take the message: ${(e as Error).message}`));
  }
}

function rpcError(id: string | number | null, code: number, message: string): JSONRPCMessage {
  return { jsonrpc: "2.0", id, error: { code, message } } as unknown as JSONRPCMessage;
}
