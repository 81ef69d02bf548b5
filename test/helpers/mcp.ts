import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

/** The SDK's Streamable HTTP client transport to a test server's /mcp, as the agent of `token` (none: no header). */
export function mcpTransport(serverUrl: string, token: string | undefined): StreamableHTTPClientTransport {
  return new StreamableHTTPClientTransport(new URL(`${serverUrl}/mcp`), {
    requestInit: token ? { headers: { authorization: `Bearer ${token}` } } : {},
  });
}
